// userdata.mjs: end-to-end test that third-party Binance clients receive
// their user data (executionReport, outboundAccountPosition) from
// coinquant-simex over the WebSocket API, subscribed with
// `userDataStream.subscribe.signature` on /ws-api/v3 — the only way
// production serves spot user data since 2026-02-20 (issue 18).
//
//   node userdata.mjs /path/to/coinquant-simex
//
// Clients (versions pinned in package.json / package-lock.json):
//   @binance/spot 32.0.4  Binance's official connector, its WebSocket API
//                         module (userDataStreamSubscribeSignature)
//   binance 3.6.5         tiagosiebler's SDK, WebsocketAPIClient
//                         .subscribeUserDataStream (HMAC keys: signature)
//   ccxt 4.5.84           ccxt.pro binance watchOrders (spot authenticate()
//                         = ensureUserDataStreamWsSubscribeSignature)
// Each client gets its own simulator (fresh account), subscribes, places a
// MARKET BUY over REST with the same client, and must see the order's
// executionReports through its own user-data callback.
//
// Output is TAP (ok N / not ok N / # diagnostics / 1..N); the exit code is 1
// if any check failed. The libraries' own console output is kept out of the
// TAP stream and shown as diagnostics only under a failed check.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import readline from 'node:readline';
import { Spot, SpotRestAPI } from '@binance/spot';
import { WebsocketAPIClient, MainClient } from 'binance';
import ccxt from 'ccxt';

const STEP_TIMEOUT_MS = 20000;      // hard limit per check
const START_TIMEOUT_MS = 15000;     // simulator must print its listening line by then
const TOTAL_TIMEOUT_MS = 180000;    // whole run, as a last resort
const API_KEY = 'e2e-userdata-api-key-' + 'k'.repeat(43);
const API_SECRET = 'e2e-userdata-api-secret-' + 's'.repeat(40);
const QTY = '0.00100000';           // the MARKET BUY every client places

const simexPath = process.argv[2];
if (!simexPath) {
    process.stdout.write('Bail out! usage: node userdata.mjs /path/to/coinquant-simex\n');
    process.exit(1);
}

// ------------------------------------------------- TAP out, library noise in

const out = (line) => process.stdout.write(line + '\n');
const libLog = [];
const LIB_LOG_KEEP = 60;
for (const level of ['log', 'info', 'warn', 'error', 'debug', 'trace']) {
    console[level] = (...args) => {
        const text = args.map((a) => (typeof a === 'string' ? a : safeJson(a))).join(' ');
        libLog.push(`[${level}] ${text}`.slice(0, 400));
        if (libLog.length > LIB_LOG_KEEP) {
            libLog.splice(0, libLog.length - LIB_LOG_KEEP);
        }
    };
}

function safeJson(v) {
    try {
        return JSON.stringify(v);
    } catch (e) {
        return String(v);
    }
}

function diag(text) {
    for (const line of String(text).split('\n')) {
        out('# ' + line);
    }
}

let testNo = 0;
let failures = 0;

// A client library that throws from a socket callback (e.g. @binance/common
// emitting 'error' with no listener when the handshake gets a 404) fails the
// running check instead of killing the run.
let failRunningCheck = null;
function onStray(e) {
    if (failRunningCheck) {
        failRunningCheck(e);
        return;
    }
    libLog.push(`[stray] ${e && e.stack ? e.stack : String(e)}`.slice(0, 400));
}
process.on('uncaughtException', onStray);
process.on('unhandledRejection', onStray);

function withTimeout(promise, ms, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// One check: fn may return a string (or array) printed under `ok`; a throw is
// `not ok`, with the error and the libraries' recent console lines.
async function check(name, fn) {
    testNo++;
    libLog.length = 0;
    const stray = new Promise((_, reject) => {
        failRunningCheck = (e) => reject(new Error('thrown inside the client library: ' + (e && e.message ? e.message : String(e))));
    });
    try {
        const notes = await withTimeout(Promise.race([Promise.resolve().then(fn), stray]), STEP_TIMEOUT_MS, name);
        out(`ok ${testNo} - ${name}`);
        for (const n of [].concat(notes === undefined ? [] : notes)) {
            diag(n);
        }
        return true;
    } catch (e) {
        failures++;
        out(`not ok ${testNo} - ${name}`);
        diag((e && e.constructor ? e.constructor.name : 'Error') + ': ' + (e && e.message !== undefined ? e.message : String(e)));
        if (libLog.length) {
            diag('client library output (last lines):');
            diag(libLog.slice(-20).join('\n'));
        }
        return false;
    } finally {
        failRunningCheck = null;
    }
}

// ------------------------------------------------------------- the simulator

const sims = [];

async function startSim() {
    const args = ['--rest-port', '0', '--ws-port', '0', '--seed', '7', '--speed', '60',
        '--api-key', API_KEY, '--balances', 'USDT=10000,BTC=1'];
    const env = { ...process.env, CQ_SIM_API_SECRET: API_SECRET };
    const child = spawn(simexPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    const sim = { child, stderr: [], exited: null, rest: null, ws: null };
    sims.push(sim);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
        sim.stderr.push(...chunk.split('\n').filter((l) => l.length > 0));
        if (sim.stderr.length > 200) {
            sim.stderr.splice(0, sim.stderr.length - 200);
        }
    });
    sim.exitPromise = new Promise((resolve) => {
        child.on('exit', (code, signal) => resolve(sim.exited = { code, signal }));
        child.on('error', (err) => resolve(sim.exited = { code: null, signal: null, error: err }));
    });
    const rl = readline.createInterface({ input: child.stdout });
    const listening = new Promise((resolve, reject) => {
        rl.on('line', (line) => {
            let msg;
            try {
                msg = JSON.parse(line);
            } catch (e) {
                return;
            }
            if (msg && msg.event === 'listening') {
                resolve(msg);
            }
        });
        sim.exitPromise.then((x) => reject(new Error(
            `simulator exited before listening (code ${x.code}, signal ${x.signal}` +
            (x.error ? ', ' + x.error.message : '') + ')' +
            (sim.stderr.length ? '\n' + sim.stderr.slice(-20).join('\n') : ''))));
    });
    const msg = await withTimeout(listening, START_TIMEOUT_MS, 'simulator listening line');
    assert.match(msg.rest, /^http:\/\/127\.0\.0\.1:\d+$/, 'listening.rest');
    assert.match(msg.ws, /^ws:\/\/127\.0\.0\.1:\d+$/, 'listening.ws');
    sim.rest = msg.rest;
    sim.ws = msg.ws;
    return sim;
}

async function stopSim(sim) {
    if (sim.exited) {
        return sim.exited;
    }
    sim.child.kill('SIGTERM');
    const t = setTimeout(() => {
        if (!sim.exited) {
            sim.child.kill('SIGKILL');
        }
    }, 5000);
    const x = await sim.exitPromise;
    clearTimeout(t);
    return x;
}

function killAllSync() {
    for (const sim of sims) {
        if (!sim.exited) {
            try {
                sim.child.kill('SIGKILL');
            } catch (e) {
                // already gone
            }
        }
    }
}

process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
        out(`Bail out! got ${sig}`);
        killAllSync();
        process.exit(1);
    });
}

// ------------------------------------------------------------ event waiting

// Events a client's callback delivered, in order, and waiters on them.
class Events {
    constructor() {
        this.list = [];
        this.waiters = [];
    }

    push(ev) {
        this.list.push(ev);
        for (const w of this.waiters.slice()) {
            const hit = this.list.find(w.pred);
            if (hit !== undefined) {
                this.waiters.splice(this.waiters.indexOf(w), 1);
                w.resolve(hit);
            }
        }
    }

    // Resolves with the first event (already seen or still to come) for
    // which pred holds. The check's own time limit bounds the wait.
    waitFor(pred) {
        const hit = this.list.find(pred);
        if (hit !== undefined) {
            return Promise.resolve(hit);
        }
        return new Promise((resolve) => this.waiters.push({ pred, resolve }));
    }

    summary() {
        return this.list.map((e) => `${e.e}${e.x ? ' ' + e.x + '/' + e.X : ''}${e.i !== undefined ? ' #' + e.i : ''}`).join(', ') || '(none)';
    }
}

// The executionReports for one MARKET BUY of QTY that filled at once:
// NEW, then TRADE/FILLED, then the balance change. Raw Binance field names.
async function expectFillEvents(events, orderId) {
    const isReport = (x, status) => (e) => e.e === 'executionReport' && e.i === orderId && e.x === x && e.X === status;
    const fresh = await events.waitFor(isReport('NEW', 'NEW'));
    const fill = await events.waitFor(isReport('TRADE', 'FILLED'));
    const pos = await events.waitFor((e) => e.e === 'outboundAccountPosition');
    assert.equal(fresh.s, 'BTCUSDT', 'executionReport.s');
    assert.equal(fresh.S, 'BUY', 'executionReport.S');
    assert.equal(fresh.o, 'MARKET', 'executionReport.o');
    assert.equal(fill.z, QTY, 'executionReport.z (cumulative filled) of the fill');
    assert.ok(events.list.indexOf(fresh) < events.list.indexOf(fill), 'NEW arrives before TRADE');
    assert.ok(pos.B.some((b) => b.a === 'BTC'), 'outboundAccountPosition lists BTC');
    return `order ${orderId}: ${events.summary()}`;
}

// ---------------------------------------------------- client 1: @binance/spot

async function testBinanceSpot() {
    const sim = await startSim();
    const wsURL = sim.ws + '/ws-api/v3';
    const client = new Spot({
        configurationRestAPI: { apiKey: API_KEY, apiSecret: API_SECRET, basePath: sim.rest },
        configurationWebsocketAPI: { apiKey: API_KEY, apiSecret: API_SECRET, wsURL },
    });
    const events = new Events();
    let conn;
    try {
        const subscribed = await check(`@binance/spot 32.0.4: websocketAPI (wsURL ${wsURL}) userDataStreamSubscribeSignature answers subscriptionId 0`, async () => {
            conn = await client.websocketAPI.connect();
            const { response, stream } = await conn.userDataStreamSubscribeSignature();
            stream.on('message', (data) => events.push(data));
            assert.deepEqual(response.data, { subscriptionId: 0 }, 'result');
            assert.ok(Array.isArray(response.rateLimits) && response.rateLimits[0].rateLimitType === 'REQUEST_WEIGHT',
                'rateLimits with REQUEST_WEIGHT');
            return `result ${JSON.stringify(response.data)}, weight used ${response.rateLimits[0].count}`;
        });
        await check('@binance/spot 32.0.4: a MARKET BUY placed with restAPI.newOrder arrives as executionReport NEW, TRADE/FILLED and outboundAccountPosition on stream.on("message")', async () => {
            assert.ok(subscribed, 'the subscribe above succeeded');
            const r = await client.restAPI.newOrder({
                symbol: 'BTCUSDT',
                side: SpotRestAPI.NewOrderSideEnum.BUY,
                type: SpotRestAPI.NewOrderTypeEnum.MARKET,
                quantity: Number(QTY),
            });
            const order = await r.data();
            assert.equal(order.status, 'FILLED', 'REST order status');
            return expectFillEvents(events, order.orderId);
        });
    } finally {
        if (conn) {
            await conn.disconnect().catch(() => {});
        }
        await stopSim(sim);
    }
}

// ----------------------------------------- client 2: binance (tiagosiebler)

async function testTiagosiebler() {
    const sim = await startSim();
    // wsUrl is the host only: the SDK appends /ws-api/v3 for its WS API keys.
    const wsapi = new WebsocketAPIClient({ api_key: API_KEY, api_secret: API_SECRET, wsUrl: sim.ws });
    const rest = new MainClient({ api_key: API_KEY, api_secret: API_SECRET, baseUrl: sim.rest, disableTimeSync: true });
    const events = new Events();
    wsapi.getWSClient().on('message', (data) => {
        if (data && typeof data.e === 'string') {
            events.push(data);
        }
    });
    try {
        const subscribed = await check(`binance 3.6.5: WebsocketAPIClient (wsUrl ${sim.ws}) subscribeUserDataStream sends userDataStream.subscribe.signature and gets subscriptionId 0`, async () => {
            const res = await wsapi.subscribeUserDataStream('mainWSAPI');
            assert.equal(res.request && res.request.method, 'userDataStream.subscribe.signature', 'method sent');
            assert.equal(res.status, 200, 'status');
            assert.deepEqual(res.result, { subscriptionId: 0 }, 'result');
            return `sent ${res.request.method}, result ${JSON.stringify(res.result)}`;
        });
        await check('binance 3.6.5: a MARKET BUY placed with MainClient.submitNewOrder arrives as executionReport NEW, TRADE/FILLED and outboundAccountPosition on the WS client\'s "message" event', async () => {
            assert.ok(subscribed, 'the subscribe above succeeded');
            const order = await rest.submitNewOrder({ symbol: 'BTCUSDT', side: 'BUY', type: 'MARKET', quantity: Number(QTY) });
            assert.equal(order.status, 'FILLED', 'REST order status');
            return expectFillEvents(events, order.orderId);
        });
    } finally {
        await wsapi.disconnectAll().catch(() => {});
        await stopSim(sim);
    }
}

// ------------------------------------------------------- client 3: ccxt.pro

async function testCcxt() {
    const sim = await startSim();
    const wsApiUrl = sim.ws + '/ws-api/v3';
    const ex = new ccxt.pro.binance({
        apiKey: API_KEY,
        secret: API_SECRET,
        options: {
            defaultType: 'spot',
            fetchCurrencies: false,
            fetchMargins: false,
            fetchMarkets: { types: ['spot'] },
            adjustForTimeDifference: false,
        },
    });
    // Replaced entirely: a call to any other Binance host fails locally.
    ex.urls.api = {
        public: sim.rest + '/api/v3',
        private: sim.rest + '/api/v3',
        v1: sim.rest + '/api/v1',
        ws: { spot: sim.ws + '/ws', 'ws-api': { spot: wsApiUrl } },
    };
    try {
        await check(`ccxt 4.5.84: pro.binance watchOrders (urls.api.ws["ws-api"].spot = ${wsApiUrl}) returns the MARKET BUY placed with createOrder, closed, over the WS API connection only`, async () => {
            // ccxt refuses plain ws:// URLs until its http agent is loaded
            // (its documented remedy, named in the error it throws).
            await ex.loadHttpProxyAgent();
            await ex.loadMarkets();
            const watching = ex.watchOrders('BTC/USDT');
            watching.catch(() => {}); // awaited below; avoid an unhandled rejection meanwhile
            // Place the order only once the subscription is confirmed:
            // authenticate() marks client.subscriptions.spot, then its
            // 'authenticate:signature:spot' future is resolved (and dropped)
            // when the userDataStream.subscribe.signature answer arrives.
            // Polled, not awaited: creating that future here would make
            // authenticate() wait on it forever.
            for (let polls = 0; ; polls++) {
                const c = ex.clients[wsApiUrl];
                if (c && c.subscriptions.spot === true && !('authenticate:signature:spot' in c.futures)) {
                    break;
                }
                assert.ok(polls < 500, 'the subscription is confirmed within 500 polls of 20 ms');
                await new Promise((r) => setTimeout(r, 20));
            }
            const order = await ex.createOrder('BTC/USDT', 'market', 'buy', Number(QTY));
            assert.equal(order.status, 'closed', 'REST order status');
            // watchOrders resolves once per update batch: NEW may come alone,
            // the fill in a later batch. A bounded number of calls, each
            // after a timer turn so that nothing here can starve the loop.
            let seen;
            const batches = [];
            for (let calls = 0; seen === undefined; calls++) {
                assert.ok(calls < 10, `the closed order within 10 watchOrders results (got ${JSON.stringify(batches)})`);
                const orders = await (calls === 0 ? watching : ex.watchOrders('BTC/USDT'));
                batches.push(orders.map((o) => `${o.id}:${o.status}`));
                seen = orders.find((o) => o.id === order.id && o.status === 'closed');
                await new Promise((r) => setTimeout(r, 0));
            }
            assert.equal(seen.filled, Number(QTY), 'filled');
            assert.deepEqual(Object.keys(ex.clients), [wsApiUrl], 'ccxt opened no other WebSocket (no listenKey stream)');
            return `order ${seen.id} ${seen.status}, filled ${seen.filled}; watchOrders results ${JSON.stringify(batches)}; sockets: ${Object.keys(ex.clients).join(', ')}`;
        });
    } finally {
        await ex.close().catch(() => {});
        await stopSim(sim);
    }
}

// ----------------------------------------------------------------------- run

const total = setTimeout(() => {
    out(`Bail out! the whole run took longer than ${TOTAL_TIMEOUT_MS} ms`);
    killAllSync();
    process.exit(1);
}, TOTAL_TIMEOUT_MS);

try {
    await testBinanceSpot();
    await testTiagosiebler();
    // ccxt's check hung once in six runs in an earlier version of this
    // script (node's event loop blocked inside ccxt, deaf to SIGTERM; cause
    // not found). It passed 30 runs since the rewrite of its wait, but a
    // hang would stop the whole suite, so it runs on request only:
    // CQ_E2E_USERDATA_CCXT=1 tests/e2e/run_userdata.sh BUILD/coinquant-simex
    if (process.env.CQ_E2E_USERDATA_CCXT === '1') {
        await testCcxt();
    } else {
        out('# ccxt watchOrders over the WS API: not run (set CQ_E2E_USERDATA_CCXT=1)');
    }
} catch (e) {
    out(`Bail out! ${e && e.message ? e.message : String(e)}`);
    killAllSync();
    process.exit(1);
}
clearTimeout(total);
out(`1..${testNo}`);
// The SDKs keep reconnect and keep-alive timers; do not wait for them.
process.exit(failures ? 1 : 0);
