//! The queue view: counts, a throughput sparkline, workers and failed jobs.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Sparkline, Table, TableState};
use ratatui::Frame;

use crate::app::App;

fn queue_layout(app: &App, area: Rect) -> [Rect; 4] {
    // One row per worker (up to 8), plus the borders and the header.
    let worker_rows = app.queue.state().data.as_ref().map_or(2, |q| q.workers.len().clamp(2, 8)) as u16;
    Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(4),
        Constraint::Length(worker_rows + 3),
        Constraint::Min(4),
    ])
    .areas(area)
}

/// Where the failed jobs' list is drawn.
pub fn failed_area(app: &App, area: Rect) -> Rect {
    queue_layout(app, area)[3]
}

pub fn queue(frame: &mut Frame, app: &App, area: Rect) {
    let [counts, spark, workers, failed] = queue_layout(app, area);

    let Some(queue) = &app.queue.state().data else {
        let text = match &app.queue.state().error {
            Some(e) => format!("could not load the queue: {e}"),
            None => "loading…".to_owned(),
        };
        frame.render_widget(Paragraph::new(text).fg(Color::DarkGray).block(Block::bordered().title(" Queue ")), area);
        return;
    };
    let count = |label: &str, n: u64, color: Color| {
        vec![Span::raw(format!(" {label} ")), Span::raw(n.to_string()).fg(color).bold(), Span::raw("  ")]
    };
    let mut line = Vec::new();
    line.extend(count("pending", queue.pending, Color::Yellow));
    line.extend(count("running", queue.running, Color::Cyan));
    line.extend(count("done", queue.done, Color::Green));
    line.extend(count("failed", queue.failed, if queue.failed > 0 { Color::Red } else { Color::Green }));
    if queue.undelivered > 0 {
        // Jobs waiting for their owner's turn, outside the queue's window.
        line.extend(count("waiting", queue.undelivered, Color::Yellow));
    }
    let mut title = format!(" Queue ({}) ", queue.mode);
    if let Some(e) = &app.queue.state().error {
        title = format!("{title}⚠ {e} ");
    }
    frame.render_widget(Paragraph::new(Line::from(line)).block(Block::bordered().title(title)), counts);

    let samples = app.queue.throughput();
    let spark_title = format!(" Throughput: {} jobs in the last minute ", queue.throughput_per_minute);
    frame.render_widget(
        Sparkline::default()
            .data(&samples)
            .style(Style::new().fg(Color::Green))
            .block(Block::bordered().title(spark_title)),
        spark,
    );

    let rows: Vec<Row> = queue
        .workers
        .iter()
        .map(|w| {
            let age = if w.heartbeat_age_secs > 15 {
                Span::raw(format!("{} s ago", w.heartbeat_age_secs)).fg(Color::Red)
            } else {
                Span::raw(format!("{} s ago", w.heartbeat_age_secs))
            };
            let jobs = w.jobs.iter().map(|j| j.image_id.clone().unwrap_or_else(|| j.job.clone())).collect::<Vec<_>>();
            let doing = match &w.problem {
                Some(problem) => Line::from(format!("MISCONFIGURED, takes no jobs: {problem}")).fg(Color::Red),
                None if jobs.is_empty() => Line::from("idle"),
                None => Line::from(jobs.join(", ")),
            };
            Row::new(vec![Line::from(w.name.clone()), Line::from(age), doing])
        })
        .collect();
    let block = Block::bordered().title(format!(" Workers ({}) ", queue.workers.len()));
    if rows.is_empty() {
        frame.render_widget(Paragraph::new("no workers: jobs wait in the queue").fg(Color::Red).block(block), workers);
    } else {
        let widths = [Constraint::Length(18), Constraint::Length(10), Constraint::Min(10)];
        frame.render_widget(
            Table::new(rows, widths)
                .header(Row::new(["worker", "heartbeat", "working on"]).style(Style::new().bold()))
                .block(block),
            workers,
        );
    }

    let failed_jobs = app.queue.visible_failed(&app.filter);
    let block = Block::bordered().title(format!(" Failed jobs ({}) ", queue.failed));
    if failed_jobs.is_empty() {
        let text = if app.filter.is_empty() { "none".to_owned() } else { format!("none match \"{}\"", app.filter) };
        frame.render_widget(Paragraph::new(text).fg(Color::DarkGray).block(block), failed);
        return;
    }
    let rows = failed_jobs
        .iter()
        .map(|f| Row::new(vec![f.image_id.clone().unwrap_or_default(), f.attempts.to_string(), f.reason.clone()]))
        .collect::<Vec<_>>();
    let widths = [Constraint::Length(27), Constraint::Length(4), Constraint::Min(10)];
    let table = Table::new(rows, widths)
        .header(Row::new(["image", "try", "reason"]).style(Style::new().bold()))
        .row_highlight_style(Style::new().bg(Color::Cyan).fg(Color::Black).add_modifier(Modifier::BOLD))
        .block(block);
    let mut state = TableState::default().with_selected(Some(app.queue.selection()));
    frame.render_stateful_widget(table, failed, &mut state);
}
