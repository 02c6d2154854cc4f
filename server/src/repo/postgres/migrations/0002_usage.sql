-- What each user's images take up, kept like image_count in the transactions that add and
-- delete images and make thumbnails; filled once here from what exists.
ALTER TABLE users
    ADD COLUMN original_bytes  bigint NOT NULL DEFAULT 0,
    ADD COLUMN thumbnail_bytes bigint NOT NULL DEFAULT 0;

UPDATE users SET
    original_bytes = coalesce((SELECT sum(size_bytes) FROM images WHERE images.owner = users.id), 0),
    thumbnail_bytes = coalesce((
        SELECT sum(t.size_bytes) FROM thumbnails t JOIN images i ON i.id = t.image_id
        WHERE i.owner = users.id AND t.status = 'ready'), 0);
