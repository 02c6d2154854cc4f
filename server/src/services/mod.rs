//! What routes share, between HTTP and the repository: listing pages of images, deleting an
//! image with its blobs, a tier's grants, and which format a thumbnail request gets. Routes
//! parse and render; these decide.

pub mod grants;
pub mod images;
pub mod negotiation;
