#!/usr/bin/env node
import { main } from "./cli.js";

const code = await main(process.argv.slice(2));
// Exit explicitly: a GPU backend (Dawn) or a worker pool can keep the event loop alive.
process.exit(code);
