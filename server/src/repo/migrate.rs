//! `imageapi-server migrate-repo --to postgres://…`: copies the sled database of the data
//! directory into PostgreSQL — users with their password hashes, tokens, tiers, images,
//! thumbnails, links, the outbox and reconciliation entries, the store marker — then checks
//! that every table holds exactly what was read. Run with the server stopped (sled's lock
//! enforces it). Rows already there are kept, so an interrupted run can be run again.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use imageapi_core::domain::{ImageId, UserId};
use imageapi_core::jobs::ThumbnailJob;

use super::postgres::PgRepo;
use super::sled::SledDb;
use super::{ImageRecord, LinkRecord, RepoError, ThumbState, TierRecord, TokenRecord, UserRecord};

/// One record read out of sled.
#[derive(Debug, Clone)]
pub enum Exported {
    Tier(TierRecord),
    /// A user with their upload window (recent uploads, against `uploads_per_hour`).
    User(UserRecord, crate::repo::UploadWindow),
    Token(TokenRecord, [u8; 32]),
    Image(ImageRecord),
    Thumbnail(ImageId, crate::repo::ThumbSlot, ThumbState),
    Link(LinkRecord, [u8; 32]),
    Job(ThumbnailJob),
    Reconcile(UserId, u64),
    StoreMarker(String),
}

impl Exported {
    /// The PostgreSQL table the record goes to.
    pub fn table(&self) -> &'static str {
        match self {
            Exported::Tier(_) => "tiers",
            Exported::User(..) => "users",
            Exported::Token(..) => "tokens",
            Exported::Image(_) => "images",
            Exported::Thumbnail(..) => "thumbnails",
            Exported::Link(..) => "links",
            Exported::Job(_) => "outbox",
            Exported::Reconcile(..) => "reconcile",
            Exported::StoreMarker(_) => "settings",
        }
    }
}

/// Records per transaction on the PostgreSQL side.
const BATCH: usize = 1000;

/// Copies everything and verifies the counts; returns them by table.
pub async fn copy(sled: SledDb, to_url: &str) -> anyhow::Result<BTreeMap<&'static str, u64>> {
    let target = PgRepo::connect(to_url, 4).await.context("connecting to PostgreSQL")?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Exported>>(4);
    let reader = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(BATCH);
        let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
        sled.export(|record| {
            *counts.entry(record.table()).or_default() += 1;
            batch.push(record);
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                tx.blocking_send(full).map_err(|_| RepoError::Storage("the copy stopped".into()))?;
            }
            Ok(())
        })?;
        if !batch.is_empty() {
            tx.blocking_send(batch).map_err(|_| RepoError::Storage("the copy stopped".into()))?;
        }
        Ok::<_, RepoError>(counts)
    });
    let mut written = 0u64;
    while let Some(batch) = rx.recv().await {
        target.import(&batch).await.context("writing to PostgreSQL")?;
        written += batch.len() as u64;
        if written.is_multiple_of(BATCH as u64 * 20) {
            eprintln!("… {written} records copied");
        }
    }
    let counts = reader.await.context("reading the sled database")??;
    target.finish_import().await?;
    let found = target.table_counts().await?;
    let mut mismatched = Vec::new();
    for (table, expected) in &counts {
        let got = found.get(table).copied().unwrap_or(0);
        if got != *expected {
            mismatched.push(format!("{table}: {expected} in sled, {got} in PostgreSQL"));
        }
    }
    for (table, got) in &found {
        if !counts.contains_key(table) && *got > 0 {
            mismatched.push(format!("{table}: none in sled, {got} in PostgreSQL"));
        }
    }
    if !mismatched.is_empty() {
        bail!("the copy does not match (was the target database in use already?): {}", mismatched.join("; "));
    }
    target.close_pool();
    Ok(counts)
}
