-- imageapi metadata, first schema. Ids are the 16 bytes of a ULID (bytea), so that their
-- byte order is their creation order: "newest first after a cursor" is an index range scan.

CREATE TABLE tiers (
    id                text PRIMARY KEY,
    name              text NOT NULL,
    thumbnail_heights integer[] NOT NULL,
    original_link     boolean NOT NULL,
    expiring_links    boolean NOT NULL,
    builtin           boolean NOT NULL
);

CREATE TABLE users (
    id                  bytea PRIMARY KEY,
    username            text NOT NULL UNIQUE,
    password_hash       text NOT NULL,
    tier                text NOT NULL REFERENCES tiers (id),
    is_active           boolean NOT NULL,
    is_admin            boolean NOT NULL,
    created_at          timestamptz NOT NULL,
    credentials_version bigint NOT NULL,
    -- Kept in the same transactions that add and delete images (read on every user view).
    image_count         bigint NOT NULL DEFAULT 0
);
CREATE INDEX users_by_tier ON users (tier);

CREATE TABLE tokens (
    hash       bytea PRIMARY KEY,
    id         bytea NOT NULL,
    user_id    bytea NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    UNIQUE (user_id, id)
);

CREATE TABLE images (
    id         bytea PRIMARY KEY,
    owner      bytea NOT NULL REFERENCES users (id),
    name       text NOT NULL,
    format     text NOT NULL,
    width      integer NOT NULL,
    height     integer NOT NULL,
    size_bytes bigint NOT NULL,
    created_at timestamptz NOT NULL
);
-- A user's images, newest first after a cursor.
CREATE INDEX images_by_owner ON images (owner, id DESC);

CREATE TABLE thumbnails (
    image_id         bytea NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    requested_height integer NOT NULL,
    status           text NOT NULL CHECK (status IN ('pending', 'ready', 'failed')),
    width            integer,
    height           integer,
    size_bytes       bigint,
    reason           text,
    PRIMARY KEY (image_id, requested_height)
);
CREATE INDEX thumbnails_pending ON thumbnails (image_id) WHERE status = 'pending';

CREATE TABLE links (
    id         bytea PRIMARY KEY,
    token_hash bytea NOT NULL UNIQUE,
    owner      bytea NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    image_id   bytea NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    -- 'original' or 'thumbnail:<height>'
    variant    text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX links_by_owner ON links (owner);
CREATE INDEX links_by_image ON links (image_id);
CREATE INDEX links_by_expiry ON links (expires_at);

-- Unfinished thumbnail jobs: a job leaves only in the transaction that applies its report.
-- No foreign key to images: a job of a deleted image is retired by a sweep, and its late
-- report still names the orphaned blobs to remove.
CREATE TABLE outbox (
    id       bytea PRIMARY KEY,
    image_id bytea NOT NULL,
    format   text NOT NULL,
    heights  integer[] NOT NULL
);
CREATE INDEX outbox_by_image ON outbox (image_id);

-- Users whose images must be brought in line with their tier.
CREATE SEQUENCE reconcile_generation;
CREATE TABLE reconcile (
    user_id    bytea PRIMARY KEY,
    generation bigint NOT NULL
);

CREATE TABLE settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);
