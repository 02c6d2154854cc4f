//! Black-box test crate; see e2e/.
