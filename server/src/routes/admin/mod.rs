//! `/api/v1/admin/...`: users, tokens, tiers, browsing images and links, the job queue.
//! Admins only.

pub mod browse;
pub mod queue;
pub mod tiers;
pub mod users;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(users::list)
        .service(users::create)
        .service(users::detail)
        .service(users::update)
        .service(users::delete)
        .service(users::issue_token)
        .service(users::revoke_token)
        .service(tiers::list)
        .service(tiers::create)
        .service(tiers::detail)
        .service(tiers::update)
        .service(tiers::delete)
        .service(browse::images)
        .service(browse::image_detail)
        .service(browse::delete_image)
        .service(crate::routes::media::admin_thumbnail)
        .service(browse::links)
        .service(browse::revoke_link)
        .service(queue::status)
        .service(queue::retry);
}
