//! Copying to the clipboard through the terminal.

use std::io::{stdout, Write};

/// OSC 52: asks the terminal to put `text` on the clipboard (terminals that allow it do).
pub fn copy_to_clipboard(text: &str) {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
    let mut out = stdout();
    let _ = write!(out, "\x1b]52;c;{encoded}\x07");
    let _ = out.flush();
}
