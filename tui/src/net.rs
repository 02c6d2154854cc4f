//! The network side: commands in, answers out as actions. Each command runs on its own task,
//! so a slow or dead server never blocks the keyboard or the screen.

use tokio::sync::mpsc::UnboundedSender;

use crate::action::{Action, Command, Loaded};
use crate::api::ApiClient;

pub fn spawn(api: &ApiClient, command: Command, answers: UnboundedSender<Action>) {
    let api = api.clone();
    tokio::spawn(async move {
        if let Some(loaded) = run(&api, command).await {
            // The receiver is gone only when the app is quitting.
            let _ = answers.send(Action::Loaded(loaded));
        }
    });
}

async fn run(api: &ApiClient, command: Command) -> Option<Loaded> {
    Some(match command {
        Command::FetchUsers => Loaded::Users(api.users().await),
        Command::FetchUserDetail(id) => Loaded::UserDetail(api.user(&id).await),
        Command::FetchTiers => Loaded::Tiers(api.tiers().await),
        Command::FetchImages { query, cursor } => {
            let result = api.images(&query, cursor.as_deref()).await;
            Loaded::Images { query, cursor, result }
        }
        Command::FetchImageDetail(id) => Loaded::ImageDetail(api.image(&id).await.map(Box::new)),
        Command::FetchPreview { id, height } => {
            let result = match api.thumbnail(&id, height).await {
                // Decoding a thumbnail is a few milliseconds of CPU: off the async threads.
                Ok(bytes) => tokio::task::spawn_blocking(move || decode_preview(&bytes))
                    .await
                    .unwrap_or_else(|e| Err(format!("decoding failed: {e}"))),
                Err(e) => Err(e.to_string()),
            };
            Loaded::Preview { id, result }
        }
        Command::DeleteImage { id, name } => {
            let result = api.delete_image(&id).await;
            Loaded::ImageDeleted { id, name, result }
        }
        Command::FetchQueue => Loaded::Queue(api.queue().await),
        Command::FetchLinks { cursor } => Loaded::Links { result: api.links(cursor.as_deref()).await, cursor },
        Command::CreateUser(user) => {
            let (done, attempt) = (format!("created user {}", user.username), format!("create user {}", user.username));
            Loaded::Changed { done, attempt, result: api.create_user(&user).await.map(|_| ()) }
        }
        Command::UpdateUser { id, username, changes } => Loaded::Changed {
            done: format!("saved user {username}"),
            attempt: format!("save user {username}"),
            result: api.update_user(&id, &changes).await.map(|_| ()),
        },
        Command::DeleteUser { id, username } => Loaded::Changed {
            done: format!("deleted user {username}"),
            attempt: format!("delete user {username}"),
            result: api.delete_user(&id).await,
        },
        Command::IssueToken { id, username } => Loaded::TokenIssued { username, result: api.issue_token(&id).await },
        Command::RevokeToken { user, token } => Loaded::Changed {
            done: format!("revoked token {token}"),
            attempt: format!("revoke token {token}"),
            result: api.revoke_token(&user, &token).await,
        },
        Command::CreateTier(body) => {
            let id = body["id"].as_str().unwrap_or_default().to_owned();
            Loaded::Changed {
                done: format!("created tier {id}"),
                attempt: format!("create tier {id}"),
                result: api.create_tier(&body).await.map(|_| ()),
            }
        }
        Command::UpdateTier { id, changes } => Loaded::Changed {
            done: format!("saved tier {id}"),
            attempt: format!("save tier {id}"),
            result: api.update_tier(&id, &changes).await.map(|_| ()),
        },
        Command::DeleteTier(id) => Loaded::Changed {
            done: format!("deleted tier {id}"),
            attempt: format!("delete tier {id}"),
            result: api.delete_tier(&id).await,
        },
        Command::RevokeLink(id) => Loaded::Changed {
            done: format!("revoked link {id}"),
            attempt: format!("revoke link {id}"),
            result: api.revoke_link(&id).await,
        },
        Command::RetryJob(job) => Loaded::Changed {
            done: format!("job {job} is back in line"),
            attempt: format!("retry job {job}"),
            result: api.retry_job(&job).await,
        },
        Command::Copy(text) => {
            crate::clipboard::copy_to_clipboard(&text);
            return None;
        }
    })
}

fn decode_preview(bytes: &[u8]) -> Result<crate::action::PreviewImage, String> {
    image::load_from_memory(bytes).map(std::sync::Arc::new).map_err(|e| format!("not a readable image: {e}"))
}
