-- Tier limits (NULL: unlimited), each upload's content hash for idempotent uploads, and each
-- user's upload window (recent uploads per minute, see `UploadWindow`) beside their usage.
ALTER TABLE tiers
    ADD COLUMN max_images        bigint CHECK (max_images >= 0),
    ADD COLUMN max_storage_bytes bigint CHECK (max_storage_bytes >= 0),
    ADD COLUMN max_upload_bytes  bigint CHECK (max_upload_bytes >= 1),
    ADD COLUMN uploads_per_hour  bigint CHECK (uploads_per_hour >= 1);

-- Builtin tiers get their builtin limits, once, here; custom tiers stay unlimited.
UPDATE tiers SET max_images = 100, max_storage_bytes = 1073741824, max_upload_bytes = 10485760,
                 uploads_per_hour = 60
    WHERE builtin AND id = 'basic';
UPDATE tiers SET max_images = 10000, max_storage_bytes = 53687091200, uploads_per_hour = 600
    WHERE builtin AND id = 'premium';

ALTER TABLE users ADD COLUMN upload_window bytea NOT NULL DEFAULT '\x';

ALTER TABLE images ADD COLUMN sha256 bytea CHECK (octet_length(sha256) = 32);
-- One image per content per owner; also what the lookup of a retried upload reads.
CREATE UNIQUE INDEX images_by_content ON images (owner, sha256) WHERE sha256 IS NOT NULL;
