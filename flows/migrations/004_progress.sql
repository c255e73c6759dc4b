-- 004: how far a running run says it is (0-100), shown on its page.
ALTER TABLE runs ADD COLUMN progress INTEGER;
