// A Node.js runtime for the local Lambda host: the loop of Lambda's `nodejs20.x` runtime, speaking
// the Runtime API (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html) at
// `AWS_LAMBDA_RUNTIME_API`, running the handler named by `_HANDLER` from `LAMBDA_TASK_ROOT`.
//
// npm's `aws-lambda-ric` does this on AWS's own images, but it needs Node 22 and a native build;
// this file needs nothing but Node 20 or later.
//
// What it does as Lambda's runtime does:
// - `_HANDLER` is `path/module.export[.nested]`: the module is `path/module.{js,mjs,cjs}` under
//   the task root; `.mjs`, or `.js` under a `package.json` with `"type": "module"`, is an ES
//   module, the rest CommonJS (both loaded with `import()`).
// - The handler may be `async (event, context)` or `(event, context, callback)`.
// - `context` has the request id, function name, version, ARN, memory, log group and stream,
//   `getRemainingTimeInMillis()`, `callbackWaitsForEmptyEventLoop`, `identity`, `clientContext`.
// - Init failures go to `/runtime/init/error` (`Runtime.ImportModuleError`,
//   `Runtime.HandlerNotFound`, `Runtime.UserCodeSyntaxError`) and the process exits; a handler's
//   error goes to `/invocation/{id}/error` with its `errorType`, `errorMessage` and `trace`.
// - `console.*` lines carry the timestamp, the request id and the level, tab-separated.
// - `_X_AMZN_TRACE_ID` is set from each event's trace header.
// - Packages the function does not bundle itself are found in `DYNAMOWAVE_NODE_SDK_DIR`, the
//   stand-in for the AWS SDK for JavaScript v3 that Lambda's runtime ships (see resolve-sdk.mjs).

import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { register } from "node:module";
import { format } from "node:util";

const API = process.env.AWS_LAMBDA_RUNTIME_API;
const BASE = "/2018-06-01/runtime";
// One connection, kept open: the loop makes one request at a time.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

if (!API) {
  process.stderr.write("AWS_LAMBDA_RUNTIME_API is not set: this runs under a Lambda Runtime API\n");
  process.exit(1);
}
const [apiHost, apiPort] = API.split(":");

function request(method, urlPath, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(body);
    const req = http.request(
      {
        host: apiHost,
        port: Number(apiPort),
        path: urlPath,
        method,
        agent,
        headers: data ? { "content-type": "application/json", "content-length": data.length, ...headers } : headers,
      },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      },
    );
    // No timeout: `/next` waits as long as there is no event.
    req.on("error", reject);
    if (data) req.write(data);
    req.end();
  });
}

/// The error object Lambda reports: `errorType`, `errorMessage`, `trace`.
function errorBody(err, fallbackType) {
  const isError = err instanceof Error;
  const errorType = (isError && err.name && err.name !== "Error" ? err.name : undefined) ?? fallbackType ?? "Error";
  const errorMessage = isError ? err.message : typeof err === "string" ? err : safeJson(err);
  const trace = isError && typeof err.stack === "string" ? err.stack.split("\n") : [];
  return { errorType, errorMessage, trace };
}

function safeJson(value) {
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

async function initError(err, errorType) {
  const body = errorBody(err, errorType);
  body.errorType = errorType;
  process.stderr.write(`${new Date().toISOString()}\tundefined\tERROR\t${format(err)}\n`);
  try {
    await request("POST", `${BASE}/init/error`, JSON.stringify(body), {
      "lambda-runtime-function-error-type": errorType,
    });
  } finally {
    process.exit(1);
  }
}

// Lambda's log line: `timestamp \t requestId \t LEVEL \t message`.
let currentRequestId = undefined;
for (const [method, level] of [
  ["log", "INFO"],
  ["info", "INFO"],
  ["warn", "WARN"],
  ["error", "ERROR"],
  ["debug", "DEBUG"],
  ["trace", "TRACE"],
]) {
  const stream = level === "INFO" || level === "DEBUG" || level === "TRACE" ? process.stdout : process.stderr;
  console[method] = (...args) => {
    const line = format(...args).replace(/\n/g, "\r");
    stream.write(`${new Date().toISOString()}\t${currentRequestId}\t${level}\t${line}\n`);
  };
}

function isEsm(file) {
  if (file.endsWith(".mjs")) return true;
  if (file.endsWith(".cjs")) return false;
  // A `.js` file is an ES module when the nearest package.json says `"type": "module"`.
  for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
    const pkg = path.join(dir, "package.json");
    if (fs.existsSync(pkg)) {
      try {
        return JSON.parse(fs.readFileSync(pkg, "utf8")).type === "module";
      } catch {
        return false;
      }
    }
    if (path.dirname(dir) === dir) return false;
  }
}

async function loadHandler() {
  const root = process.env.LAMBDA_TASK_ROOT || process.cwd();
  const spec = process.env._HANDLER || "";
  const slash = spec.lastIndexOf("/");
  const dir = spec.slice(0, slash + 1);
  const rest = spec.slice(slash + 1);
  const dot = rest.indexOf(".");
  if (dot <= 0 || dot === rest.length - 1) {
    await initError(new Error(`Bad handler ${spec}: expected MODULE.FUNCTION`), "Runtime.MalformedHandlerName");
  }
  const moduleName = dir + rest.slice(0, dot);
  const exportPath = rest.slice(dot + 1).split(".");
  const base = path.resolve(root, moduleName);
  const file = [".js", ".mjs", ".cjs"].map((ext) => base + ext).find((f) => fs.existsSync(f));
  if (!file) {
    await initError(new Error(`Cannot find module '${moduleName}' in ${root}`), "Runtime.ImportModuleError");
  }
  let mod;
  try {
    mod = await import(pathToFileURL(file).href);
  } catch (err) {
    const type = err instanceof SyntaxError ? "Runtime.UserCodeSyntaxError" : "Runtime.ImportModuleError";
    await initError(err, type);
  }
  // CommonJS exports arrive as `default`; named exports are there too when Node can see them.
  const find = (obj) => exportPath.reduce((o, key) => (o == null ? undefined : o[key]), obj);
  const handler = find(mod) ?? (isEsm(file) ? undefined : find(mod.default));
  if (typeof handler !== "function") {
    await initError(new Error(`${spec} is undefined or not exported`), "Runtime.HandlerNotFound");
  }
  return handler;
}

function makeContext(headers, deadline) {
  const requestId = headers["lambda-runtime-aws-request-id"];
  const parse = (h) => {
    if (!headers[h]) return undefined;
    try {
      return JSON.parse(headers[h]);
    } catch {
      return undefined;
    }
  };
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    invokedFunctionArn: headers["lambda-runtime-invoked-function-arn"],
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    awsRequestId: requestId,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    identity: parse("lambda-runtime-cognito-identity"),
    clientContext: parse("lambda-runtime-client-context"),
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
}

/// Runs the handler once: its promise, or its callback, whichever answers first.
function runHandler(handler, event, context) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const done = (err, value) => {
      if (settled) return;
      settled = true;
      if (err !== undefined && err !== null) reject(err);
      else resolve(value);
    };
    // The legacy methods some handlers still call.
    context.done = done;
    context.succeed = (value) => done(null, value);
    context.fail = (err) => done(err ?? new Error("handled"));
    try {
      const result = handler(event, context, done);
      if (result && typeof result.then === "function") {
        result.then(
          (value) => done(null, value),
          (err) => done(err ?? new Error("the handler's promise was rejected without a reason")),
        );
      } else if (handler.length < 3) {
        // Neither a promise nor a callback handler: its return value is the answer.
        done(null, result);
      }
    } catch (err) {
      done(err);
    }
  });
}

async function main() {
  const sdkDir = process.env.DYNAMOWAVE_NODE_SDK_DIR;
  if (sdkDir) {
    // ES modules do not read NODE_PATH: a resolve hook looks there after the function's own
    // node_modules, as Lambda's runtime finds its bundled SDK.
    register("./resolve-sdk.mjs", import.meta.url, { data: { sdkDir } });
  }
  const handler = await loadHandler();
  process.on("uncaughtException", async (err) => {
    console.error("Uncaught Exception", err);
    if (currentRequestId) {
      await postError(currentRequestId, err, "Runtime.UncaughtException").catch(() => {});
    }
    process.exit(129);
  });
  for (;;) {
    const next = await request("GET", `${BASE}/invocation/next`);
    if (next.status !== 200) {
      process.stderr.write(`Runtime API /next answered ${next.status}: ${next.body}\n`);
      process.exit(1);
    }
    const requestId = next.headers["lambda-runtime-aws-request-id"];
    const deadline = Number(next.headers["lambda-runtime-deadline-ms"]) || Date.now() + 3000;
    if (next.headers["lambda-runtime-trace-id"]) {
      process.env._X_AMZN_TRACE_ID = next.headers["lambda-runtime-trace-id"];
    } else {
      delete process.env._X_AMZN_TRACE_ID;
    }
    currentRequestId = requestId;
    let event;
    try {
      event = JSON.parse(next.body.toString("utf8"));
    } catch (err) {
      await postError(requestId, err, "Runtime.UnmarshalError");
      continue;
    }
    try {
      const value = await runHandler(handler, event, makeContext(next.headers, deadline));
      const body = value === undefined ? "null" : JSON.stringify(value);
      await request("POST", `${BASE}/invocation/${requestId}/response`, body);
    } catch (err) {
      console.error("Invoke Error", safeJson(errorBody(err)));
      await postError(requestId, err);
    }
    currentRequestId = undefined;
  }
}

async function postError(requestId, err, fallbackType) {
  const body = errorBody(err, fallbackType);
  await request("POST", `${BASE}/invocation/${requestId}/error`, JSON.stringify(body), {
    "lambda-runtime-function-error-type": body.errorType,
  });
}

main().catch((err) => {
  process.stderr.write(`runtime failed: ${format(err)}\n`);
  process.exit(1);
});
