//! Wall-clock timestamps as the broker writes them everywhere (audit
//! records, reload acknowledgements): RFC 3339, UTC, milliseconds.

/// Now, e.g. `2024-05-01T12:00:00.123Z`.
pub fn now_rfc3339() -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}
