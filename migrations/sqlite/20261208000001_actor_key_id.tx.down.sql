ALTER TABLE events DROP COLUMN actor_key_id;
