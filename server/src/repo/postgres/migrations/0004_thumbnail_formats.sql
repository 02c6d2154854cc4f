-- Thumbnails in several encodings: the source's own ('source', every row written before) and
-- the formats a tier grants beyond it. A thumbnail is now an image, a height and a format.
ALTER TABLE thumbnails ADD COLUMN format text NOT NULL DEFAULT 'source'
    CHECK (format IN ('source', 'webp', 'avif'));
ALTER TABLE thumbnails DROP CONSTRAINT thumbnails_pkey;
ALTER TABLE thumbnails ADD PRIMARY KEY (image_id, requested_height, format);

-- A job makes each of its heights in each of its formats; jobs recorded before made the source's.
ALTER TABLE outbox ADD COLUMN formats text[] NOT NULL DEFAULT ARRAY['source']::text[];

-- The image's ThumbHash placeholder (base64), set by its first job's report.
ALTER TABLE images ADD COLUMN thumbhash text;
