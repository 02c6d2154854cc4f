-- The formats a tier grants beyond the source's own ('webp', 'avif'). Tiers from before
-- granted nothing beyond the source: custom ones keep that (admins opt in); the builtin ones
-- get their builtin formats, once, here.
ALTER TABLE tiers
    ADD COLUMN formats text[] NOT NULL DEFAULT '{}'
        CHECK (formats <@ ARRAY['webp', 'avif']::text[]);

UPDATE tiers SET formats = ARRAY['webp'] WHERE builtin AND id = 'basic';
UPDATE tiers SET formats = ARRAY['webp', 'avif'] WHERE builtin AND id IN ('premium', 'enterprise');
