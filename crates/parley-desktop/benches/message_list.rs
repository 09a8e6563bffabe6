//! Draws the chat view with 100 000 messages loaded, with Slint's software
//! renderer into an in-memory frame buffer, and reports time-to-first-frame
//! and per-frame times while scrolling. Every frame is drawn in full (a new
//! buffer each time), so the figures are a worst case for the renderer.
//!
//! `cargo bench -p parley-desktop --bench message_list` (pass a count as the
//! first argument to change the number of messages).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use parley_client::pb;
use parley_desktop::messages::{Entry, MessageModel};
use parley_desktop::people::People;
use parley_desktop::{AppWindow, ConversationItem, Main, Page};
use slint::platform::software_renderer::{MinimalSoftwareWindow, PremultipliedRgbaColor, RepaintBufferType};
use slint::platform::{Platform, WindowAdapter};
use slint::{ComponentHandle, ModelRc, VecModel};

const WIDTH: u32 = 1180;
const HEIGHT: u32 = 760;

struct Headless {
    window: Rc<MinimalSoftwareWindow>,
    start: Instant,
}

impl Platform for Headless {
    fn create_window_adapter(&self) -> Result<Rc<dyn WindowAdapter>, slint::PlatformError> {
        Ok(self.window.clone())
    }

    fn duration_since_start(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A plausible chat history: two people, mixed lengths, a new day every 400
/// messages, one image every 50.
fn history(count: usize) -> Vec<Entry> {
    let people = People::default();
    let start_ms = 1_700_000_000_000i64;
    let lines = [
        "ok",
        "See you at ten!",
        "Did you see the forecast for Saturday? Rain until noon, then sunny — we could start later.",
        "Sure 🙂",
        "I pushed the photos to the shared folder, the ones from the north wall came out great.",
        "A longer one, to wrap over several lines: we meet at the car park at nine, I bring the rope \
         and the quickdraws, you bring the snacks, and whoever is late buys the coffee afterwards.",
    ];
    (0..count)
        .filter_map(|i| {
            let image = i % 50 == 49;
            let message = pb::Message {
                conv_id: 1,
                seq: i as i64 + 1,
                sender_id: if i % 3 == 0 { 1 } else { 2 },
                kind: if image {
                    pb::MessageKind::Image
                } else {
                    pb::MessageKind::Text
                } as i32,
                text: if image {
                    String::new()
                } else {
                    lines[i % lines.len()].to_string()
                },
                file: image.then(|| pb::FileRef {
                    file_id: i as i64,
                    name: format!("photo-{i}.jpg"),
                    size: 240_000,
                    width: 1600,
                    height: 1200,
                    ..Default::default()
                }),
                created_at_ms: start_ms + (i as i64 / 400) * 86_400_000 + (i as i64 % 400) * 60_000,
                ..Default::default()
            };
            Entry::from_message(&message, 1, &people)
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Saves a frame as PNG when `PARLEY_BENCH_FRAMES` names a directory, to
/// check by eye that the benchmark draws what it claims to.
fn save_frame(buffer: &[PremultipliedRgbaColor], name: &str) {
    let Some(dir) = std::env::var_os("PARLEY_BENCH_FRAMES") else {
        return;
    };
    let bytes: Vec<u8> = buffer
        .iter()
        .flat_map(|p| [p.red, p.green, p.blue, 255])
        .collect();
    if let Some(image) = image::RgbaImage::from_raw(WIDTH, HEIGHT, bytes) {
        let path = std::path::Path::new(&dir).join(format!("{name}.png"));
        if let Err(e) = image.save(&path) {
            eprintln!("{}: {e}", path.display());
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let window = MinimalSoftwareWindow::new(RepaintBufferType::NewBuffer);
    slint::platform::set_platform(Box::new(Headless {
        window: window.clone(),
        start: Instant::now(),
    }))
    .map_err(|e| format!("{e:?}"))?;
    window.set_size(slint::PhysicalSize::new(WIDTH, HEIGHT));
    let mut buffer = vec![PremultipliedRgbaColor::default(); (WIDTH * HEIGHT) as usize];
    let draw = |buffer: &mut Vec<PremultipliedRgbaColor>| -> bool {
        slint::platform::update_timers_and_animations();
        window.draw_if_needed(|renderer| {
            renderer.render(buffer, WIDTH as usize);
        })
    };

    let ui = AppWindow::new()?;
    ui.set_page(Page::Main);
    ui.show()?;
    let main = ui.global::<Main>();
    main.set_me_name("Alice Meyer".into());
    main.set_me_initials("AM".into());
    main.set_conversations(ModelRc::new(VecModel::from(vec![ConversationItem {
        title: "Bob Stone".into(),
        initials: "BS".into(),
        preview: "See you at ten!".into(),
        time: "14:05".into(),
        ..Default::default()
    }])));
    main.set_chat_title("Bob Stone".into());
    main.set_chat_initials("BS".into());
    draw(&mut buffer);

    let built = Instant::now();
    let entries = history(count);
    let build_time = built.elapsed();
    let people = Rc::new(RefCell::new(People::default()));
    let model = Rc::new(MessageModel::new(people));

    // Time to first frame: from handing the model to the view until the
    // newest messages are on screen.
    let start = Instant::now();
    model.reset(1, false, 0, entries);
    main.set_messages(ModelRc::from(model.clone()));
    main.set_current(0);
    main.set_stick_to_bottom(true);
    main.set_bottom_tick(main.get_bottom_tick() + 1);
    draw(&mut buffer);
    let first_frame = start.elapsed();
    // Scrolling to the bottom may take a second layout pass.
    let mut settle_frames = 0;
    while draw(&mut buffer) && settle_frames < 10 {
        settle_frames += 1;
    }
    let settled = start.elapsed();
    let bottom = main.get_chat_y();
    save_frame(&buffer, "first-frame");

    // Smooth scrolling up through history, 40 px per frame.
    main.set_stick_to_bottom(false);
    let mut frames = Vec::new();
    for step in 1..=600 {
        main.set_chat_y(bottom + 40.0 * step as f32);
        let t = Instant::now();
        draw(&mut buffer);
        frames.push(t.elapsed());
    }
    // Page jumps (scroll bar drags): 5 000 px at a time.
    let mut jumps = Vec::new();
    for step in 1..=100 {
        main.set_chat_y(bottom + 5_000.0 * step as f32);
        let t = Instant::now();
        draw(&mut buffer);
        jumps.push(t.elapsed());
    }
    save_frame(&buffer, "after-scrolling");
    frames.sort();
    jumps.sort();
    println!("messages in the conversation: {count}");
    println!("building the entries (not UI):  {}", ms(build_time));
    println!("time to first frame:            {}", ms(first_frame));
    println!(
        "time to settled bottom frame:   {} ({settle_frames} extra frames)",
        ms(settled)
    );
    println!(
        "smooth scroll, 600 frames of 40 px: p50 {} p95 {} p99 {} max {}",
        ms(percentile(&frames, 0.5)),
        ms(percentile(&frames, 0.95)),
        ms(percentile(&frames, 0.99)),
        ms(percentile(&frames, 1.0)),
    );
    println!(
        "page jumps, 100 of 5000 px:        p50 {} p95 {} p99 {} max {}",
        ms(percentile(&jumps, 0.5)),
        ms(percentile(&jumps, 0.95)),
        ms(percentile(&jumps, 0.99)),
        ms(percentile(&jumps, 1.0)),
    );
    println!(
        "scroll offset at the bottom: {bottom:.0} px (content scrolled through: {:.0} px)",
        -bottom
    );
    println!("frame size {WIDTH}x{HEIGHT}, full repaint every frame, software renderer");
    Ok(())
}
