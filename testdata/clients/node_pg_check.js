// node-postgres (`pg`) through airlock: see README.md in this directory.
//
// node-postgres sends every parameterised query through Parse/Bind/
// Describe/Execute (named when the query has a name), and its Pool reuses
// connections as they are.
//
// argv: host port user password database
let pg;
try {
  pg = require('pg');
} catch (e) {
  console.log(`skip: ${e.message.split('\n')[0]}`);
  process.exit(3);
}

const [host, port, user, password, database] = process.argv.slice(2, 7);
const conninfo = { host, port: Number(port), user, password, database, connectionTimeoutMillis: 10000 };
// Runs for minutes unless cancelled (pg_sleep is a function airlock denies).
const SLOW = 'SELECT count(*) FROM generate_series(1, 3000000000)';

function check(name, cond, detail = '') {
  if (!cond) {
    console.error(`FAILED: ${name} ${detail}`);
    process.exit(1);
  }
  console.log(`pass: ${name}`);
}

async function refused(client, text, rule, values) {
  try {
    await client.query(text, values);
  } catch (e) {
    check(`refused ${text}`, e.code === '42501' && e.message.includes(rule), `${e.code} ${e.message}`);
    return;
  }
  check(`refused ${text}`, false, 'it ran');
}

async function main() {
  const client = new pg.Client(conninfo);
  await client.connect();
  let r = await client.query(
    'SELECT id, name, balance, created, tags, meta, mood, photo, uid FROM customers WHERE id = $1', [1]);
  const row = r.rows[0];
  check('typed read',
    row.id === 1 && row.name === 'Alice' && row.balance === '1234.50'
      && row.created.toISOString() === '2024-01-02T03:04:05.000Z'
      && JSON.stringify(row.tags) === '["a","b"]' && JSON.stringify(row.meta) === '{"k":1}'
      && row.mood === 'calm' && row.photo.equals(Buffer.from([1, 2]))
      && row.uid === 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    JSON.stringify(row));
  r = await client.query('SELECT photo, uid FROM customers WHERE id = 2');
  check('NULLs', r.rows[0].photo === null && r.rows[0].uid === null, JSON.stringify(r.rows));

  for (let i = 0; i < 10; i++) {
    r = await client.query({ name: 'masked', text: 'SELECT email, ssn, name FROM customers WHERE id = $1', values: [1] });
    check(`masked, prepared run ${i}`,
      JSON.stringify(r.rows) === '[{"email":"****@example.com","ssn":"****","name":"Alice"}]', JSON.stringify(r.rows));
  }
  r = await client.query({ text: 'SELECT email, lower(email), id FROM customers ORDER BY id', rowMode: 'array' });
  check('masked, array rows',
    JSON.stringify(r.rows) === '[["****@example.com","****",1],["****@example.org","****",2]]', JSON.stringify(r.rows));

  await refused(client, 'SELECT * FROM secrets', 'agent-rw.deny-tables');
  await refused(client, 'SELECT k FROM secrets WHERE k = $1', 'agent-rw.deny-tables', ['top']);
  await refused(client, 'DELETE FROM notes', 'builtin.unbounded-write');
  r = await client.query('SELECT 1 AS one');
  check('usable after refusals', r.rows[0].one === 1);

  // A multi-statement simple query, as migrations and scripts send them.
  const results = await client.query("SELECT 'a' AS x; SELECT email FROM customers WHERE id = 2");
  check('multi-statement query',
    results.length === 2 && results[0].rows[0].x === 'a' && results[1].rows[0].email === '****@example.org',
    JSON.stringify(results.map((x) => x.rows)));

  for (let i = 0; i < 20; i++) {
    await client.query('INSERT INTO notes (customer_id, body) VALUES ($1, $2)', [1, `batch ${i}`]);
  }
  await client.query('BEGIN');
  await client.query("INSERT INTO notes (body) VALUES ('rolled back')");
  try {
    await client.query('SELECT * FROM secrets');
  } catch (e) {
    await client.query('ROLLBACK');
  }
  r = await client.query('SELECT count(*)::int AS n FROM notes');
  check('refusal inside a transaction, then ROLLBACK', r.rows[0].n === 20, JSON.stringify(r.rows));

  // node-postgres sends no cancel request (its query_timeout only gives
  // up client side): a statement_timeout the agent sets is the server's.
  await client.query("SET statement_timeout = '500ms'");
  try {
    await client.query(SLOW);
    check('statement_timeout', false, 'the slow query finished');
  } catch (e) {
    check('statement_timeout', e.code === '57014', `${e.code} ${e.message}`);
  }
  await client.query('RESET statement_timeout');
  r = await client.query('SELECT 2 AS two');
  check('usable after the timeout', r.rows[0].two === 2);
  await client.end();

  // A pool: connections are reused as they are, several at once.
  const pool = new pg.Pool({ ...conninfo, max: 3 });
  const runs = [];
  for (let i = 0; i < 12; i++) {
    runs.push(pool.query('SELECT email FROM customers WHERE id = $1', [2]));
  }
  const all = await Promise.all(runs);
  check('pooled runs', all.every((x) => x.rows[0].email === '****@example.org'), JSON.stringify(all.map((x) => x.rows)));
  await pool.end();
}

main().then(() => console.log('ok'), (e) => {
  console.error(`FAILED: ${e.stack || e}`);
  process.exit(1);
});
