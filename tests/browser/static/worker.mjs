// Runs one wsclient.mjs function inside a dedicated Web Worker and posts back its report.
import * as wsTests from "./wsclient.mjs";

self.onmessage = async ({ data: { name, args } }) => {
  const inWorker = typeof WorkerGlobalScope !== "undefined" && self instanceof WorkerGlobalScope;
  try {
    self.postMessage({ inWorker, result: await wsTests[name](...args) });
  } catch (error) {
    self.postMessage({ inWorker, error: String(error && error.stack ? error.stack : error) });
  }
};
