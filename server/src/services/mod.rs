//! What routes share, between HTTP and the repository: listing pages of images, deleting an
//! image with its blobs, and a tier's grants. Routes parse and render; these decide.

pub mod grants;
pub mod images;
