// Runs Deepgram's official JavaScript SDK (@deepgram/sdk, pinned in
// package.json) against keystest, for conformance_test.go, which starts the
// fake, leases the credentials and reads what this script reports.
//
// Input, from the environment:
//   DG_BASE_URL    http://host:port of the fake (REST)
//   DG_WS_URL      ws://host:port of the fake (/v1/listen)
//   DG_PROJECT     the fake's project ID
//   DG_ADMIN_KEY   a key with keys:read and keys:write, for the manage calls
//   DG_LEASED_KEY, DG_LEASED_KEY_ID   an API key leased through lease
//   DG_LEASED_TOKEN                   a grant token leased through lease
//   DG_AUDIO       a file of raw linear16, 16 kHz, mono audio
//
// Output: one JSON object a line on stdout, each with an "event":
//   {"event":"manage", ...}            what the manage and auth calls read
//   {"event":"open","stream":name}     a stream is open; the script then
//                                      waits for one line on stdin
//   {"event":"stream","stream":name,"messages":[...]}  what it received
//   {"event":"error","message":...}    then exit status 1
//
// Messages are reported as the fields a user's code reads, never whole.
import { DeepgramClient } from "@deepgram/sdk";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";

const env = process.env;
const environment = {
  base: env.DG_BASE_URL,
  production: env.DG_WS_URL,
  agent: env.DG_WS_URL,
  agentRest: env.DG_BASE_URL,
};
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function manage() {
  const admin = new DeepgramClient({ apiKey: env.DG_ADMIN_KEY, environment, maxRetries: 0 });
  const projects = await admin.manage.v1.projects.list();
  const list = await admin.manage.v1.projects.keys.list(env.DG_PROJECT);
  const got = await admin.manage.v1.projects.keys.get(env.DG_PROJECT, env.DG_LEASED_KEY_ID);
  const grantDefault = await admin.auth.v1.tokens.grant();
  const grantFraction = await admin.auth.v1.tokens.grant({ ttl_seconds: 30.5 });
  emit({
    event: "manage",
    projects: (projects.projects ?? []).map((p) => p.project_id),
    listed: (list.api_keys ?? []).map((k) => ({
      api_key_id: k.api_key?.api_key_id,
      scopes: k.api_key?.scopes,
      member_id: k.member?.member_id,
    })),
    got: {
      api_key_id: got.item?.member?.api_key?.api_key_id,
      scopes: got.item?.member?.api_key?.scopes,
      member_id: got.item?.member?.member_id,
    },
    grant_default: { has_token: !!grantDefault.access_token, expires_in: grantDefault.expires_in },
    grant_fraction: { has_token: !!grantFraction.access_token, expires_in: grantFraction.expires_in },
  });
}

// stream opens /v1/listen with client, reports it open, waits for the go
// line, sends the audio in four frames and CloseStream, and reports the
// messages received up to Metadata.
async function stream(name, client) {
  const audio = readFileSync(env.DG_AUDIO);
  const socket = await client.listen.v1.connect({
    model: "nova-3",
    encoding: "linear16",
    sample_rate: 16000,
    channels: 1,
    interim_results: "true",
    vad_events: "true",
    utterance_end_ms: "1000",
    reconnectAttempts: 0,
  });
  const messages = [];
  const finished = new Promise((resolve, reject) => {
    socket.on("message", (m) => {
      messages.push({
        type: m.type,
        is_final: m.is_final,
        transcript: m.channel?.alternatives?.[0]?.transcript,
        request_id: m.type === "Metadata" ? m.request_id : m.metadata?.request_id,
        timestamp: m.timestamp,
        last_word_end: m.last_word_end,
      });
      if (m.type === "Metadata") resolve();
    });
    socket.on("error", (e) => reject(new Error(`${name} stream: ${e?.message ?? e}`)));
    socket.on("close", (e) => reject(new Error(`${name} stream closed before Metadata (code ${e?.code})`)));
  });
  socket.connect();
  await socket.waitForOpen();
  emit({ event: "open", stream: name });
  await stdinLines.next();
  const frame = audio.length / 4;
  for (let i = 0; i < 4; i++) {
    socket.sendMedia(audio.subarray(i * frame, (i + 1) * frame));
  }
  socket.sendCloseStream({ type: "CloseStream" });
  await finished;
  socket.close();
  emit({ event: "stream", stream: name, messages });
}

const timer = setTimeout(() => {
  emit({ event: "error", message: "timed out" });
  process.exit(1);
}, 30_000);

try {
  await manage();
  await stream("key", new DeepgramClient({ apiKey: env.DG_LEASED_KEY, environment }));
  await stream("token", new DeepgramClient({ accessToken: env.DG_LEASED_TOKEN, environment }));
} catch (e) {
  emit({ event: "error", message: String(e?.message ?? e) });
  process.exit(1);
}
clearTimeout(timer);
process.exit(0);
