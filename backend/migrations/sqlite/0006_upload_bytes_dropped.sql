-- p2law store, version 6: when retention (`p2law gc --upload-bytes-days`) dropped an upload's
-- original bytes. Its parsed runs, and the fits made from them, stay.
ALTER TABLE uploads ADD COLUMN bytes_dropped_at TEXT;
