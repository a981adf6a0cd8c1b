-- OPT-IN, not part of the default setup: a trigger that sends the
-- wake-up of the streams of other processes from the transaction that
-- inserts into the events table "events" (rename it as needed), for
-- writers that insert events without rsql or never call the NotifyFunc.
--
-- rsql does not need it: the NotifyFunc of an insert (called after the
-- commit) sends the same notification from rsql's own notify connection,
-- debounced. The cost of the trigger is why it is opt-in: PostgreSQL
-- serialises the commits of all transactions that sent a notification on
-- one global lock (held from the commit's start to its end, WAL flush
-- included), so every writing transaction would queue behind the others;
-- and each notifying transaction adds to the server's notification queue
-- (8 GB in a standard installation), which no session listening while it
-- stays in a long transaction lets be emptied: once it is full, the
-- commit of every notifying transaction, and so every insert of events,
-- fails.
--
-- The channel is rsql's: "reflex_" and the table's name, at most 63 bytes.
CREATE OR REPLACE FUNCTION reflex_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify(left('reflex_' || TG_TABLE_NAME, 63), '');
  RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER "events_reflex_notify" AFTER INSERT ON "events"
  FOR EACH STATEMENT EXECUTE FUNCTION reflex_notify();
