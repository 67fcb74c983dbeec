// Test kit: make a hub store fail on purpose, on either store kind.
//
//   failInsertsOf(location, clientActionId)  every insert of an event with that clientActionId
//                                            raises inside the store's transaction; resolves
//                                            with a function that removes the fault
import Database from 'better-sqlite3';
import pg from 'pg';

export async function failInsertsOf(location: string, clientActionId: number): Promise<() => Promise<void>> {
  const id = Math.trunc(clientActionId);
  if (!/^postgres(ql)?:\/\//.test(location)) {
    const db = new Database(location);
    db.exec(`CREATE TRIGGER fail_${id} BEFORE INSERT ON events WHEN NEW.client_action_id = ${id} BEGIN SELECT RAISE(ABORT, 'injected failure'); END`);
    return async () => {
      db.exec(`DROP TRIGGER fail_${id}`);
      db.close();
    };
  }
  const client = new pg.Client({ connectionString: location });
  client.on('error', () => {});
  await client.connect();
  await client.query(`
    CREATE FUNCTION fail_${id}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.client_action_id = ${id} THEN RAISE EXCEPTION 'injected failure'; END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER fail_${id} BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION fail_${id}();`);
  return async () => {
    await client.query(`DROP TRIGGER fail_${id} ON events; DROP FUNCTION fail_${id}();`);
    await client.end();
  };
}
