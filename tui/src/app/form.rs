//! Forms for creating and editing users and tiers. A form mostly collects text and choices
//! for the server to validate, and its per-field errors are shown next to the fields; a
//! tier's limits are also checked here first, against the ranges the server uses.

use std::collections::BTreeMap;

use imageapi_core::domain::{LimitField, TierLimits};
use imageapi_core::image::ExtraFormat;
use serde_json::{json, Map, Value};

use crate::units::{exact_bytes, parse_bytes};

/// The label of a tier's formats field: what it grants beyond the source's own format.
const FORMATS_LABEL: &str = "Extra formats (webp, avif)";

#[derive(Debug, Clone, PartialEq)]
pub enum FormKind {
    CreateUser,
    EditUser { id: String, username: String },
    CreateTier,
    EditTier { id: String, limits: TierLimits },
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
    /// Shown dimmed while a text field is empty (what empty means).
    pub placeholder: Option<&'static str>,
}

impl Field {
    fn new(key: &'static str, label: &'static str, value: FieldValue) -> Self {
        Self { key, label, value, error: None, placeholder: None }
    }
    fn text(key: &'static str, label: &'static str, value: &str) -> Self {
        Self::new(key, label, FieldValue::Text(value.to_owned()))
    }
    fn secret(key: &'static str, label: &'static str) -> Self {
        Self::new(key, label, FieldValue::Secret(String::new()))
    }
    fn flag(key: &'static str, label: &'static str, on: bool) -> Self {
        Self::new(key, label, FieldValue::Flag(on))
    }
    fn choice(key: &'static str, label: &'static str, options: Vec<String>, current: &str) -> Self {
        let index = options.iter().position(|o| o == current).unwrap_or(0);
        Self::new(key, label, FieldValue::Choice { options, index })
    }
    /// One of a tier's limits: empty is unlimited.
    fn limit(field: LimitField, limits: &TierLimits) -> Self {
        let label = match field {
            LimitField::MaxImages => "Max images",
            LimitField::MaxStorageBytes => "Max storage (e.g. 10GiB)",
            LimitField::MaxUploadBytes => "Max upload (e.g. 10MiB)",
            LimitField::UploadsPerHour => "Uploads per hour",
        };
        let text = limits.get(field).map(|v| if is_size(field) { exact_bytes(v) } else { v.to_string() });
        Self { placeholder: Some("unlimited"), ..Self::text(field.as_str(), label, &text.unwrap_or_default()) }
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
            ]
            .into_iter()
            .chain(limit_fields(&TierLimits::UNLIMITED))
            .collect(),
        )
    }

    /// The tier as it is; its `limits` are kept to send only the changed ones.
    pub fn edit_tier(
        id: &str,
        name: &str,
        heights: &[u32],
        original: bool,
        expiring: bool,
        formats: &[ExtraFormat],
        limits: TierLimits,
    ) -> Self {
        let heights = heights.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        let formats = formats.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", ");
        Self::new(
            FormKind::EditTier { id: id.to_owned(), limits },
            vec![
                Field::text("name", "Name", name),
                Field::text("thumbnail_heights", "Heights (e.g. 200, 400)", &heights),
                Field::flag("original_link", "Original link", original),
                Field::flag("expiring_links", "Expiring links", expiring),
                Field::text("formats", FORMATS_LABEL, &formats),
            ]
            .into_iter()
            .chain(limit_fields(&limits))
            .collect(),
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
            FormKind::EditTier { id, .. } => format!("Edit tier {id}"),
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
    /// so the server's own validation speaks about them. Limits: on a create only those set;
    /// on an edit only those changed, `null` for one cleared (unlimited).
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        for field in &self.fields {
            if let Some(limit) = limit_of(field) {
                if let Some(value) = self.limit_json(limit, field) {
                    body.insert(field.key.to_owned(), value);
                }
                continue;
            }
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

    /// What a limit's field adds to the body, if anything.
    fn limit_json(&self, limit: LimitField, field: &Field) -> Option<Value> {
        let FieldValue::Text(text) = &field.value else { return None };
        // Unreadable text (not sent if the form was checked) goes as typed, for the server.
        let Ok(value) = parse_limit(limit, text) else { return Some(json!(text.trim())) };
        match &self.kind {
            FormKind::EditTier { limits, .. } if limits.get(limit) == value => None,
            FormKind::EditTier { .. } => Some(json!(value)),
            _ => value.map(Value::from),
        }
    }

    /// Checks what can be checked before sending (a tier's limits): false, with the reasons
    /// by the fields and the focus on the first, if the form should not be sent.
    pub fn check_locally(&mut self) -> bool {
        let mut invalid = Vec::new();
        for field in &mut self.fields {
            let Some(limit) = limit_of(field) else { continue };
            if let FieldValue::Text(text) = &field.value {
                if let Err(why) = parse_limit(limit, text) {
                    field.error = Some(why);
                    invalid.push(field.key);
                }
            }
        }
        if invalid.is_empty() {
            return true;
        }
        self.error = Some(format!("invalid field(s): {} (not sent)", invalid.join(", ")));
        self.focus = self.fields.iter().position(|f| f.error.is_some()).unwrap_or(self.focus);
        false
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

fn limit_fields(limits: &TierLimits) -> impl Iterator<Item = Field> + '_ {
    LimitField::ALL.into_iter().map(|field| Field::limit(field, limits))
}

/// The limit a field edits, if it is one.
fn limit_of(field: &Field) -> Option<LimitField> {
    LimitField::ALL.into_iter().find(|limit| limit.as_str() == field.key)
}

/// Whether a limit counts bytes (and so takes units: `10MiB`).
fn is_size(field: LimitField) -> bool {
    matches!(field, LimitField::MaxStorageBytes | LimitField::MaxUploadBytes)
}

/// What a limit's text means: empty is unlimited, sizes may carry units. Checked with the
/// server's ranges ([`TierLimits::check`]); the top of `max_upload_bytes` is the server's own
/// upload limit, which only the server knows, so that one it checks.
pub fn parse_limit(field: LimitField, text: &str) -> Result<Option<u64>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let value = if is_size(field) {
        parse_bytes(text)?
    } else {
        text.parse::<u64>().map_err(|_| "must be a whole number, or empty for unlimited".to_owned())?
    };
    TierLimits::check(field, Some(value), u64::MAX).map_err(|_| {
        let (min, max) = TierLimits::range(field, u64::MAX);
        match field {
            LimitField::MaxUploadBytes => "must be at least 1 byte, or empty for unlimited".to_owned(),
            LimitField::MaxStorageBytes => format!("must be at most {}, or empty for unlimited", exact_bytes(max)),
            _ => format!("must be {min} to {max}, or empty for unlimited"),
        }
    })
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
        let formats = [ExtraFormat::Webp, ExtraFormat::Avif];
        let edit = Form::edit_tier("gold", "Gold", &[100], false, false, &formats, TierLimits::UNLIMITED);
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
    fn limits_are_read_with_the_servers_ranges_and_empty_is_unlimited() {
        use LimitField::*;
        assert_eq!(parse_limit(MaxImages, " "), Ok(None));
        assert_eq!(parse_limit(MaxImages, "0"), Ok(Some(0)), "0 images: uploads closed");
        assert_eq!(parse_limit(MaxImages, "1000000000"), Ok(Some(1_000_000_000)));
        assert!(parse_limit(MaxImages, "1000000001").unwrap_err().contains("0 to 1000000000"));
        assert!(parse_limit(MaxImages, "10MiB").unwrap_err().contains("whole number"), "counts take no units");
        assert_eq!(parse_limit(MaxStorageBytes, "1PiB"), Ok(Some(1 << 50)));
        assert!(parse_limit(MaxStorageBytes, "1025TiB").unwrap_err().contains("at most 1PiB"));
        assert_eq!(parse_limit(MaxUploadBytes, "10 MiB"), Ok(Some(10 << 20)));
        assert_eq!(parse_limit(MaxUploadBytes, "1TiB"), Ok(Some(1 << 40)), "the server knows its own limit");
        assert!(parse_limit(MaxUploadBytes, "0").unwrap_err().contains("at least 1 byte"));
        assert!(parse_limit(UploadsPerHour, "0").is_err());
        assert!(parse_limit(UploadsPerHour, "1000001").is_err());
        assert_eq!(parse_limit(UploadsPerHour, "60"), Ok(Some(60)));
    }

    #[test]
    fn a_tier_edit_starts_from_its_limits_and_sends_only_the_changed_ones() {
        let limits = TierLimits {
            max_images: Some(100),
            max_storage_bytes: Some(1 << 30),
            max_upload_bytes: Some(10 << 20),
            uploads_per_hour: None,
        };
        let mut form = Form::edit_tier("gold", "Gold", &[100], false, false, &[], limits);
        let shown: Vec<_> = form.fields[5..].iter().map(|f| (f.key, f.display())).collect();
        assert_eq!(
            shown,
            [
                ("max_images", "100".to_owned()),
                ("max_storage_bytes", "1GiB".to_owned()),
                ("max_upload_bytes", "10MiB".to_owned()),
                ("uploads_per_hour", String::new()),
            ]
        );
        let body = form.body();
        assert!(LimitField::ALL.iter().all(|f| body.get(f.as_str()).is_none()), "nothing changed: {body}");
        // 1024MiB is the same 1GiB; the images limit cleared; an hourly limit set.
        form.fields[6].value = FieldValue::Text("1024MiB".into());
        form.fields[5].value = FieldValue::Text(String::new());
        form.fields[8].value = FieldValue::Text("30".into());
        let body = form.body();
        assert_eq!((body.get("max_images"), body.get("uploads_per_hour")), (Some(&Value::Null), Some(&json!(30))));
        assert!(body.get("max_storage_bytes").is_none() && body.get("max_upload_bytes").is_none(), "{body}");
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
