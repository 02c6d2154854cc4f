-- Expired links leave the links table within a minute (lists and the per-user cap read only
-- live ones); their token hashes stay here to answer 410 until the retention ends.
CREATE TABLE expired_link_tokens (
    token_hash bytea PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX expired_link_tokens_by_expiry ON expired_link_tokens (expires_at);

-- A user's links newest first after a cursor.
CREATE INDEX links_by_owner_id ON links (owner, id);
DROP INDEX links_by_owner;
