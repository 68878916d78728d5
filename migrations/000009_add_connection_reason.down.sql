ALTER TABLE connections DROP COLUMN reason;
