// A module resolve hook (node:module `register`) for runtime.mjs: a bare import the function
// cannot resolve from its own directory (its node_modules, then each parent's) is looked up once
// more from the SDK directory, which is how Lambda's Node.js runtime offers the AWS SDK for
// JavaScript v3 to functions that do not bundle it. The function's own copy always wins.

import { pathToFileURL } from "node:url";
import path from "node:path";

let sdkParent;

export async function initialize(data) {
  // Resolving "from" a file inside the SDK's node_modules parent finds the packages there.
  sdkParent = pathToFileURL(path.join(data.sdkDir, "resolve-from.mjs")).href;
}

export async function resolve(specifier, context, nextResolve) {
  try {
    return await nextResolve(specifier, context);
  } catch (err) {
    const bare = !specifier.startsWith(".") && !specifier.startsWith("/") && !specifier.includes(":");
    if (!sdkParent || !bare || err?.code !== "ERR_MODULE_NOT_FOUND") throw err;
    return nextResolve(specifier, { ...context, parentURL: sdkParent });
  }
}
