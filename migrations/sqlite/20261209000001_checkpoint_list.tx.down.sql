DROP INDEX IF EXISTS checkpoints_list;
