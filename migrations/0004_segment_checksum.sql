-- A checksum of each segment object, recorded when the writer stages it
-- ("blake3:" and 64 hex digits). `hindsight verify` compares the store against
-- it. Rows written before this migration have none (NULL); verify checks
-- those by decoding them.
ALTER TABLE segments ADD COLUMN checksum TEXT;
