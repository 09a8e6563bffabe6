//! How values read in the UI: times, day separators, sizes, initials,
//! avatar colours and one-line previews. Pure functions of their inputs
//! (the clock and time zone are passed in) so they are unit-tested.

use chrono::{DateTime, Datelike, Local, NaiveDate, TimeZone};
use parley_client::pb;

/// A message time in the list: "14:05" today, "Yesterday", the weekday within
/// a week, else the date.
pub fn list_time<Tz: TimeZone>(ms: i64, now: &DateTime<Tz>) -> String
where
    Tz::Offset: Copy + std::fmt::Display,
{
    let Some(at) = at_ms(ms, &now.timezone()) else {
        return String::new();
    };
    let today = now.date_naive();
    let day = at.date_naive();
    if day == today {
        at.format("%H:%M").to_string()
    } else if today.pred_opt() == Some(day) {
        "Yesterday".into()
    } else if (today - day).num_days() < 7 && day < today {
        at.format("%a").to_string()
    } else if day.year() == today.year() {
        at.format("%b %-d").to_string()
    } else {
        at.format("%Y-%m-%d").to_string()
    }
}

/// The clock time under a bubble.
pub fn bubble_time<Tz: TimeZone>(ms: i64, tz: &Tz) -> String
where
    Tz::Offset: Copy + std::fmt::Display,
{
    at_ms(ms, tz)
        .map(|at| at.format("%H:%M").to_string())
        .unwrap_or_default()
}

/// The calendar day of `ms`, for grouping messages under day separators.
pub fn day_of<Tz: TimeZone>(ms: i64, tz: &Tz) -> Option<NaiveDate>
where
    Tz::Offset: Copy + std::fmt::Display,
{
    at_ms(ms, tz).map(|at| at.date_naive())
}

/// The label of a day separator: "Today", "Yesterday", "Monday, March 3" or
/// with the year when it is not this year.
pub fn day_label(day: NaiveDate, today: NaiveDate) -> String {
    if day == today {
        "Today".into()
    } else if today.pred_opt() == Some(day) {
        "Yesterday".into()
    } else if day.year() == today.year() {
        day.format("%A, %B %-d").to_string()
    } else {
        day.format("%B %-d, %Y").to_string()
    }
}

/// "last seen …" for an offline friend.
pub fn last_seen<Tz: TimeZone + Copy>(ms: i64, now: &DateTime<Tz>) -> String
where
    Tz::Offset: Copy + std::fmt::Display,
{
    if ms <= 0 {
        return "offline".into();
    }
    let Some(at) = at_ms(ms, &now.timezone()) else {
        return "offline".into();
    };
    let minutes = (*now - at).num_minutes();
    if minutes < 1 {
        "last seen just now".into()
    } else if minutes < 60 {
        format!("last seen {minutes} min ago")
    } else if at.date_naive() == now.date_naive() {
        format!("last seen at {}", at.format("%H:%M"))
    } else {
        format!("last seen {}", list_time(ms, now))
    }
}

fn at_ms<Tz: TimeZone>(ms: i64, tz: &Tz) -> Option<DateTime<Tz>> {
    tz.timestamp_millis_opt(ms).single()
}

/// Now, in the local time zone.
pub fn now() -> DateTime<Local> {
    Local::now()
}

/// A byte count for people: "980 B", "12.3 KB", "4.0 MB", "1.2 GB".
pub fn file_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Up to two initials of a name, upper-cased ("Ada Lovelace" → "AL").
pub fn initials(name: &str) -> String {
    // Punctuation ("Bob (climbing)") makes poor initials: use the first
    // letter or digit of each word.
    let mut words = name
        .split_whitespace()
        .filter_map(|w| w.chars().find(|c| c.is_alphanumeric()));
    let first = words.next();
    let second = words.next_back();
    let picked: String = first.into_iter().chain(second).collect();
    if picked.is_empty() {
        "?".into()
    } else {
        picked.to_uppercase()
    }
}

/// A stable colour per id, from a palette that reads well with white initials.
pub fn tint(id: i64) -> slint::Color {
    const PALETTE: [(u8, u8, u8); 8] = [
        (0xe1, 0x72, 0x76),
        (0x7b, 0xc8, 0x62),
        (0x65, 0xaa, 0xdd),
        (0xa6, 0x95, 0xe7),
        (0xee, 0x7a, 0xae),
        (0x6e, 0xc9, 0xcb),
        (0xfa, 0xa7, 0x74),
        (0x5b, 0x8d, 0xef),
    ];
    let (r, g, b) = PALETTE[id.rem_euclid(PALETTE.len() as i64) as usize];
    slint::Color::from_rgb_u8(r, g, b)
}

/// One line describing a message, for the conversation list and notifications.
pub fn preview(message: &pb::Message) -> String {
    if message.recalled {
        return "Message recalled".into();
    }
    match message.kind() {
        pb::MessageKind::Image => "[Image]".into(),
        pb::MessageKind::File => {
            let name = message.file.as_ref().map(|f| f.name.as_str()).unwrap_or("");
            format!("[File] {name}")
        }
        pb::MessageKind::VoiceNote => "[Voice message]".into(),
        pb::MessageKind::CallRecord => "[Call]".into(),
        pb::MessageKind::System => "[Group update]".into(),
        _ => first_line(&message.text, 80),
    }
}

/// The first line of `text`, cut at `max` characters with an ellipsis.
pub fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() > max {
        let cut: String = line.chars().take(max).collect();
        format!("{cut}…")
    } else if text.lines().nth(1).is_some() {
        format!("{line}…")
    } else {
        line.to_string()
    }
}

/// The size a thumbnail is shown at: fits in `max`×`max` keeping the aspect
/// ratio, never below 60 px on the short side so tiny images stay tappable.
pub fn thumbnail_size(width: u32, height: u32, max: f32) -> (f32, f32) {
    if width == 0 || height == 0 {
        return (max, max * 0.75);
    }
    let (w, h) = (width as f32, height as f32);
    let scale = (max / w).min(max / h).min(1.0);
    let (w, h) = (w * scale, h * scale);
    (w.max(60.0), h.max(60.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, TimeZone};

    fn tz() -> FixedOffset {
        FixedOffset::east_opt(3600).unwrap()
    }

    fn ms(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        tz().with_ymd_and_hms(y, mo, d, h, mi, 0)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn list_times_get_coarser_with_age() {
        let now = tz().with_ymd_and_hms(2026, 3, 12, 15, 0, 0).unwrap();
        assert_eq!(list_time(ms(2026, 3, 12, 9, 5), &now), "09:05");
        assert_eq!(list_time(ms(2026, 3, 11, 23, 59), &now), "Yesterday");
        assert_eq!(list_time(ms(2026, 3, 9, 10, 0), &now), "Mon");
        assert_eq!(list_time(ms(2026, 1, 2, 10, 0), &now), "Jan 2");
        assert_eq!(list_time(ms(2025, 12, 30, 10, 0), &now), "2025-12-30");
    }

    #[test]
    fn day_labels() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 12).unwrap();
        assert_eq!(day_label(today, today), "Today");
        assert_eq!(day_label(today.pred_opt().unwrap(), today), "Yesterday");
        assert_eq!(
            day_label(NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(), today),
            "Monday, March 2"
        );
        assert_eq!(
            day_label(NaiveDate::from_ymd_opt(2024, 7, 4).unwrap(), today),
            "July 4, 2024"
        );
    }

    #[test]
    fn last_seen_reads_naturally() {
        let now = tz().with_ymd_and_hms(2026, 3, 12, 15, 0, 0).unwrap();
        assert_eq!(last_seen(0, &now), "offline");
        assert_eq!(last_seen(ms(2026, 3, 12, 14, 50), &now), "last seen 10 min ago");
        assert_eq!(last_seen(ms(2026, 3, 12, 9, 30), &now), "last seen at 09:30");
        assert_eq!(last_seen(ms(2026, 3, 11, 9, 30), &now), "last seen Yesterday");
    }

    #[test]
    fn sizes() {
        assert_eq!(file_size(0), "0 B");
        assert_eq!(file_size(999), "999 B");
        assert_eq!(file_size(12_345), "12.3 KB");
        assert_eq!(file_size(4_000_000), "4.0 MB");
        assert_eq!(file_size(2_147_483_648), "2.1 GB");
    }

    #[test]
    fn initials_take_first_and_last_word() {
        assert_eq!(initials("Ada Lovelace"), "AL");
        assert_eq!(initials("ada"), "A");
        assert_eq!(initials("Jean Paul Sartre"), "JS");
        assert_eq!(initials("  "), "?");
        assert_eq!(initials("éclair"), "É");
        assert_eq!(initials("Bob (climbing)"), "BC");
        assert_eq!(initials("— ✈"), "?");
    }

    #[test]
    fn previews() {
        let mut m = pb::Message {
            kind: pb::MessageKind::Text as i32,
            text: "hello\nworld".into(),
            ..Default::default()
        };
        assert_eq!(preview(&m), "hello…");
        m.kind = pb::MessageKind::Image as i32;
        assert_eq!(preview(&m), "[Image]");
        m.recalled = true;
        assert_eq!(preview(&m), "Message recalled");
        assert_eq!(first_line(&"x".repeat(100), 5), "xxxxx…");
    }

    #[test]
    fn thumbnails_keep_aspect_and_a_minimum() {
        assert_eq!(thumbnail_size(800, 400, 300.0), (300.0, 150.0));
        assert_eq!(thumbnail_size(100, 50, 300.0), (100.0, 60.0));
        assert_eq!(thumbnail_size(0, 0, 300.0), (300.0, 225.0));
        assert_eq!(tint(3), tint(11));
    }
}
