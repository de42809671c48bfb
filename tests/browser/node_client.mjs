// Node's built-in WebSocket (undici) as a non-browser client: runs static/wsclient.mjs's suite.
// Usage: node node_client.mjs '{"urls": {...}, "sizes": [...]}'  -> the JSON report on stdout.
import { suite } from "./static/wsclient.mjs";

const config = JSON.parse(process.argv[2]);
const report = await suite(config.urls, config.sizes);
report.version = process.version;
process.stdout.write(JSON.stringify(report));
