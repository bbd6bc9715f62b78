'use strict'
// node-postgres, driven by tests/explore/drivers.py through racebench's proxy: one command a
// line on stdin (id, op, args; tab-separated, each field URI-encoded), one answer a line on
// stdout (id, "ok", fields... or id, "err", sqlstate, message). Commands run in order, except
// "cancel", which cancels the running one at once.
const readline = require('node:readline')
const pg = require('pg')
const { from: copyFrom, to: copyTo } = require('pg-copy-streams')

let client = null
let config = null
let running = null // the Query object on the wire, for a cancel to name

const answer = (id, fields) =>
  process.stdout.write([id, ...fields.map((f) => encodeURIComponent(String(f)))].join('\t') + '\n')
const numbers = (run) => run.split(',').map(Number)
const cells = (res) => (res.rows || []).map((row) => row.join(','))

function submit(text, values) {
  const query = new pg.Query({ text, values, rowMode: 'array' })
  const done = new Promise((resolve, reject) => {
    client.query(query, (err, res) => (err ? reject(err) : resolve(res)))
  })
  running = query
  return done.finally(() => {
    if (running === query) running = null
  })
}

function copy(stream, data) {
  return new Promise((resolve, reject) => {
    const chunks = []
    client.query(stream)
    stream.on('error', reject)
    if (data === undefined) {
      stream.on('data', (chunk) => chunks.push(chunk))
      stream.on('end', () => resolve(Buffer.concat(chunks).toString()))
    } else {
      stream.on('finish', () => resolve(stream.rowCount))
      stream.end(data)
    }
  })
}

const ops = {
  async connect(url, app, mode) {
    config = { connectionString: url, application_name: app, pipeline: mode === 'pipeline' }
    client = new pg.Client(config)
    client.on('error', () => {}) // a backend terminated while idle: the next query says so
    await client.connect()
    const res = await submit('SELECT pg_backend_pid()')
    return [res.rows[0][0]]
  },
  async simple(sql) {
    return [(await submit(sql)).rowCount]
  },
  async query(sql, ...params) {
    const res = await submit(sql, params.map(Number))
    return [res.rowCount, ...cells(res)]
  },
  async prepared(sql, ...runs) {
    const counts = []
    for (const run of runs) {
      const res = await client.query({ name: 'racebench_prepared', text: sql, values: numbers(run) })
      counts.push(res.rowCount)
    }
    return counts
  },
  async batch(sql, ...runs) {
    // issued together, none awaited before the next: with `pipeline` they share the wire
    const results = await Promise.all(runs.map((run) => client.query(sql, numbers(run))))
    return results.map((res) => res.rowCount)
  },
  async begin() {
    await submit('BEGIN')
    return []
  },
  async commit() {
    await submit('COMMIT')
    return []
  },
  async rollback() {
    await submit('ROLLBACK')
    return []
  },
  async copy_in(sql, data) {
    return [await copy(copyFrom(sql), data)]
  },
  async copy_out(sql) {
    return [await copy(copyTo(sql))]
  },
  async close() {
    await client.end()
    return []
  },
}

function cancel() {
  if (running === null) return ['err', '', 'nothing is running']
  new pg.Client(config).cancel(client, running)
  return ['ok']
}

let chain = Promise.resolve()
const lines = readline.createInterface({ input: process.stdin })
lines.on('line', (line) => {
  const [id, ...fields] = line.split('\t')
  const [op, ...args] = fields.map(decodeURIComponent)
  if (op === 'cancel') {
    answer(id, cancel())
    return
  }
  chain = chain.then(async () => {
    try {
      answer(id, ['ok', ...(await ops[op](...args))])
    } catch (err) {
      answer(id, ['err', err.code || '', err.message])
    }
  })
})
lines.on('close', () => chain.then(() => process.exit(0)))
