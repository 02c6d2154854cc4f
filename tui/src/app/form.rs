//! Forms for creating and editing users and tiers. A form only collects text and choices;
//! the server validates, and its per-field errors are shown next to the fields.

use std::collections::BTreeMap;

use imageapi_core::image::ExtraFormat;
use serde_json::{json, Map, Value};

/// The label of a tier's formats field: what it grants beyond the source's own format.
const FORMATS_LABEL: &str = "Extra formats (webp, avif)";

#[derive(Debug, Clone, PartialEq)]
pub enum FormKind {
    CreateUser,
    EditUser { id: String, username: String },
    CreateTier,
    EditTier { id: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Text(String),
    /// Shown as stars.
    Secret(String),
    Flag(bool),
    Choice {
        options: Vec<String>,
        index: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The API's name for it (errors come back under this name).
    pub key: &'static str,
    pub label: &'static str,
    pub value: FieldValue,
    pub error: Option<String>,
}

impl Field {
    fn text(key: &'static str, label: &'static str, value: &str) -> Self {
        Self { key, label, value: FieldValue::Text(value.to_owned()), error: None }
    }
    fn secret(key: &'static str, label: &'static str) -> Self {
        Self { key, label, value: FieldValue::Secret(String::new()), error: None }
    }
    fn flag(key: &'static str, label: &'static str, on: bool) -> Self {
        Self { key, label, value: FieldValue::Flag(on), error: None }
    }
    fn choice(key: &'static str, label: &'static str, options: Vec<String>, current: &str) -> Self {
        let index = options.iter().position(|o| o == current).unwrap_or(0);
        Self { key, label, value: FieldValue::Choice { options, index }, error: None }
    }

    /// What the field shows.
    pub fn display(&self) -> String {
        match &self.value {
            FieldValue::Text(s) => s.clone(),
            FieldValue::Secret(s) => "*".repeat(s.chars().count()),
            FieldValue::Flag(on) => if *on { "[x] yes" } else { "[ ] no" }.to_owned(),
            FieldValue::Choice { options, index } => {
                format!("< {} >", options.get(*index).map(String::as_str).unwrap_or("-"))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Form {
    pub kind: FormKind,
    pub fields: Vec<Field>,
    pub focus: usize,
    /// The server's general message when it refused the form.
    pub error: Option<String>,
    /// Sent, waiting for the answer (keys are ignored meanwhile).
    pub submitting: bool,
}

impl Form {
    pub fn create_user(tiers: Vec<String>) -> Self {
        Self::new(
            FormKind::CreateUser,
            vec![
                Field::text("username", "Username", ""),
                Field::secret("password", "Password"),
                Field::choice("tier", "Tier", tiers, "basic"),
                Field::flag("is_admin", "Admin", false),
            ],
        )
    }

    pub fn edit_user(id: &str, username: &str, tier: &str, active: bool, admin: bool, tiers: Vec<String>) -> Self {
        Self::new(
            FormKind::EditUser { id: id.to_owned(), username: username.to_owned() },
            vec![
                Field::choice("tier", "Tier", tiers, tier),
                Field::flag("is_active", "Active", active),
                Field::flag("is_admin", "Admin", admin),
                Field::secret("password", "New password (empty: keep)"),
            ],
        )
    }

    pub fn create_tier() -> Self {
        Self::new(
            FormKind::CreateTier,
            vec![
                Field::text("id", "Id (a-z 0-9 -)", ""),
                Field::text("name", "Name", ""),
                Field::text("thumbnail_heights", "Heights (e.g. 200, 400)", ""),
                Field::flag("original_link", "Original link", false),
                Field::flag("expiring_links", "Expiring links", false),
                Field::text("formats", FORMATS_LABEL, ""),
            ],
        )
    }

    pub fn edit_tier(
        id: &str,
        name: &str,
        heights: &[u32],
        original: bool,
        expiring: bool,
        formats: &[ExtraFormat],
    ) -> Self {
        let heights = heights.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        let formats = formats.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", ");
        Self::new(
            FormKind::EditTier { id: id.to_owned() },
            vec![
                Field::text("name", "Name", name),
                Field::text("thumbnail_heights", "Heights (e.g. 200, 400)", &heights),
                Field::flag("original_link", "Original link", original),
                Field::flag("expiring_links", "Expiring links", expiring),
                Field::text("formats", FORMATS_LABEL, &formats),
            ],
        )
    }

    fn new(kind: FormKind, fields: Vec<Field>) -> Self {
        Self { kind, fields, focus: 0, error: None, submitting: false }
    }

    pub fn title(&self) -> String {
        match &self.kind {
            FormKind::CreateUser => "New user".to_owned(),
            FormKind::EditUser { username, .. } => format!("Edit user {username}"),
            FormKind::CreateTier => "New tier".to_owned(),
            FormKind::EditTier { id } => format!("Edit tier {id}"),
        }
    }

    pub fn next(&mut self) {
        self.focus = (self.focus + 1) % self.fields.len().max(1);
    }

    pub fn prev(&mut self) {
        let n = self.fields.len().max(1);
        self.focus = (self.focus + n - 1) % n;
    }

    fn focused(&mut self) -> Option<&mut Field> {
        self.fields.get_mut(self.focus)
    }

    pub fn type_char(&mut self, c: char) {
        let Some(field) = self.fields.get_mut(self.focus) else { return };
        match &mut field.value {
            FieldValue::Text(s) | FieldValue::Secret(s) => {
                s.push(c);
                field.error = None;
            }
            // Space flips a yes/no or steps a choice; other keys mean nothing there.
            FieldValue::Flag(_) | FieldValue::Choice { .. } if c == ' ' => self.toggle(),
            FieldValue::Flag(_) | FieldValue::Choice { .. } => {}
        }
    }

    pub fn backspace(&mut self) {
        if let Some(field) = self.focused() {
            if let FieldValue::Text(s) | FieldValue::Secret(s) = &mut field.value {
                s.pop();
                field.error = None;
            }
        }
    }

    pub fn toggle(&mut self) {
        if let Some(field) = self.focused() {
            match &mut field.value {
                FieldValue::Flag(on) => *on = !*on,
                FieldValue::Choice { options, index } => *index = (*index + 1) % options.len().max(1),
                _ => {}
            }
            field.error = None;
        }
    }

    /// The JSON body for the API. Heights are sent as typed (numbers where they are numbers),
    /// so the server's own validation speaks about them.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        for field in &self.fields {
            let value = match (&field.value, field.key) {
                (FieldValue::Text(s), "thumbnail_heights") => heights_json(s),
                (FieldValue::Text(s), "formats") => names_json(s),
                (FieldValue::Text(s), _) => json!(s.trim()),
                // An empty new password on an edit means "keep".
                (FieldValue::Secret(s), _) if s.is_empty() && matches!(self.kind, FormKind::EditUser { .. }) => {
                    continue
                }
                (FieldValue::Secret(s), _) => json!(s),
                (FieldValue::Flag(on), _) => json!(on),
                (FieldValue::Choice { options, index }, _) => json!(options.get(*index).cloned().unwrap_or_default()),
            };
            body.insert(field.key.to_owned(), value);
        }
        Value::Object(body)
    }

    /// Shows the server's refusal: per-field messages by the fields, the rest below.
    pub fn show_errors(&mut self, detail: &str, fields: &BTreeMap<String, Vec<String>>) {
        self.submitting = false;
        let mut unplaced = Vec::new();
        for field in &mut self.fields {
            field.error = None;
        }
        for (key, messages) in fields {
            match self.fields.iter_mut().find(|f| f.key == key) {
                Some(field) => field.error = Some(messages.join("; ")),
                None => unplaced.push(format!("{key}: {}", messages.join("; "))),
            }
        }
        let mut general = detail.to_owned();
        if !unplaced.is_empty() {
            general = format!("{general} ({})", unplaced.join(", "));
        }
        self.error = Some(general);
        if let Some(first) = self.fields.iter().position(|f| f.error.is_some()) {
            self.focus = first;
        }
    }
}

/// `"200, 400"` → `[200, 400]`; a piece that is not a number is sent as text for the server
/// to reject with its own message.
fn heights_json(text: &str) -> Value {
    let items: Vec<Value> = text
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().map(Value::from).unwrap_or_else(|_| Value::from(s)))
        .collect();
    Value::Array(items)
}

/// `"webp, avif"` → `["webp", "avif"]`, sent as typed for the server to judge.
fn names_json(text: &str) -> Value {
    Value::Array(text.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()).map(Value::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tier_form_sends_formats_as_a_list_of_names_and_an_edit_starts_from_the_tiers() {
        let mut form = Form::create_tier();
        assert_eq!(form.body()["formats"], json!([]), "none unless chosen");
        form.focus = 5;
        for c in "avif,  webp gif".chars() {
            form.type_char(c);
        }
        assert_eq!(form.body()["formats"], json!(["avif", "webp", "gif"]));
        let edit = Form::edit_tier("gold", "Gold", &[100], false, false, &[ExtraFormat::Webp, ExtraFormat::Avif]);
        assert_eq!(edit.fields[4].display(), "webp, avif");
        assert_eq!(edit.body()["formats"], json!(["webp", "avif"]));
    }

    #[test]
    fn a_tier_form_sends_heights_as_numbers_and_flags_as_booleans() {
        let mut form = Form::create_tier();
        for c in "bronze".chars() {
            form.type_char(c);
        }
        form.next();
        for c in "Bronze".chars() {
            form.type_char(c);
        }
        form.next();
        for c in "100, 300 x".chars() {
            form.type_char(c);
        }
        form.next();
        form.type_char(' ');
        assert_eq!(
            form.body(),
            json!({"id": "bronze", "name": "Bronze", "thumbnail_heights": [100, 300, "x"], "original_link": true, "expiring_links": false, "formats": []})
        );
    }

    #[test]
    fn an_empty_new_password_is_left_out_of_a_user_edit() {
        let form = Form::edit_user("u1", "ann", "premium", true, false, vec!["basic".into(), "premium".into()]);
        assert_eq!(form.body(), json!({"tier": "premium", "is_active": true, "is_admin": false}));
    }

    #[test]
    fn server_errors_land_by_their_fields_and_focus_the_first() {
        let mut form = Form::create_tier();
        form.submitting = true;
        let fields = BTreeMap::from([
            ("thumbnail_heights".to_owned(), vec!["must be 1..=4096".to_owned()]),
            ("other".to_owned(), vec!["odd".to_owned()]),
        ]);
        form.show_errors("invalid field(s)", &fields);
        assert!(!form.submitting);
        assert_eq!(form.focus, 2);
        assert_eq!(form.fields[2].error.as_deref(), Some("must be 1..=4096"));
        assert_eq!(form.error.as_deref(), Some("invalid field(s) (other: odd)"));
    }

    #[test]
    fn choices_cycle_and_secrets_are_masked() {
        let mut form = Form::create_user(vec!["basic".into(), "premium".into()]);
        form.type_char('a');
        form.next();
        form.type_char('p');
        form.type_char('w');
        assert_eq!(form.fields[1].display(), "**");
        form.next();
        assert_eq!(form.fields[2].display(), "< basic >");
        form.toggle();
        assert_eq!(form.fields[2].display(), "< premium >");
        form.toggle();
        assert_eq!(form.fields[2].display(), "< basic >");
    }
}
