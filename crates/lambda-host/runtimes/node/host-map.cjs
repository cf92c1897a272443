// Preloaded (`node --require`) into every Node.js function the local Lambda host starts: sends
// TCP connections for mapped host names to the local gateway, so that code building AWS's URLs
// (`https://{apiId}.execute-api.{region}.amazonaws.com/{stage}`) reaches it without editing
// /etc/hosts.
//
// `DYNAMOWAVE_HOST_MAP` is `PATTERN=ADDRESS:PORT[,PATTERN=ADDRESS:PORT...]`; a pattern is a host
// name or `*.` and a suffix, the star standing for exactly one label (as in a certificate). Only
// connections to port 443 are moved. The hook sits on `net.Socket.prototype.connect`, which
// `net.connect`, `tls.connect`, `https.request` (the AWS SDK's NodeHttpHandler) and `fetch` all
// end in; it changes where the socket connects and nothing else, so TLS still sends the
// original name as SNI and checks the certificate against it.

"use strict";

const net = require("node:net");

function parse(text) {
  const rules = [];
  for (const entry of (text || "").split(",")) {
    if (!entry) continue;
    const eq = entry.indexOf("=");
    const colon = entry.lastIndexOf(":");
    if (eq <= 0 || colon <= eq) continue;
    const pattern = entry.slice(0, eq).toLowerCase();
    const address = entry.slice(eq + 1, colon).replace(/^\[(.*)\]$/, "$1");
    const port = Number(entry.slice(colon + 1));
    if (!address || !Number.isInteger(port) || port <= 0 || port > 65535) continue;
    rules.push({ pattern, address, port });
  }
  return rules;
}

function matches(pattern, host) {
  if (pattern.startsWith("*.")) {
    const suffix = pattern.slice(1);
    if (!host.endsWith(suffix)) return false;
    const label = host.slice(0, host.length - suffix.length);
    return label.length > 0 && !label.includes(".");
  }
  return host === pattern;
}

const rules = parse(process.env.DYNAMOWAVE_HOST_MAP);

function target(host, port) {
  if (typeof host !== "string" || Number(port ?? 443) !== 443) return undefined;
  const name = host.toLowerCase().replace(/\.$/, "");
  return rules.find((r) => matches(r.pattern, name));
}

if (rules.length > 0) {
  const connect = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function (...args) {
    // `net.connect` passes its arguments already normalized, as `[options, callback]`.
    const holder = Array.isArray(args[0]) ? args[0] : args;
    const first = holder[0];
    if (first && typeof first === "object" && !first.path) {
      const rule = target(first.host, first.port);
      if (rule) holder[0] = { ...first, host: rule.address, port: rule.port };
    } else if ((typeof first === "number" || typeof first === "string") && typeof holder[1] === "string") {
      const rule = target(holder[1], first);
      if (rule) {
        holder[0] = rule.port;
        holder[1] = rule.address;
      }
    }
    return connect.apply(this, args);
  };
}
