#!/usr/bin/env node
/* global process, console, performance */
/**
 * Micro-benchmark of the training kernels: @apt/backend-cpu (tfjs wasm + our
 * kernels) against tfjs's stock wasm backend, tfjs's pure-JS cpu backend and,
 * when `/usr/bin/python3 -c "import torch"` works, PyTorch on the same shapes
 * (NCHW there) with the same thread count.
 *
 *   cd packages/backend-cpu && npx tsc -b && node bench/kernels.mjs [--json] [--skip=cpu,stock,torch]
 *
 * Each engine runs in its own child process (a tfjs backend, once initialised,
 * cannot be swapped for another build of itself; and the threads probe may
 * leave the wasm module aborted). A cell is the median of 7 timed calls after
 * 2 warm-ups, each call reading its result back (dataSync) so the time includes
 * the work; a call over 3 s is timed once (marked *).
 */
import { spawnSync } from "node:child_process";
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";

const REPS = 7;
const WARMUPS = 2;
const SLOW_MS = 3000;

const conv = (id, op, x, w, s, kind) => ({ id, op, kind, x, w, s, shape: `x=[${x}] W=[${w}] s${s} same` });
const mm = (id, op, a, b, ta, tb) => ({ id, op, kind: "mm", a, b, ta, tb, shape: `[${a}]${ta ? "ᵀ" : ""} × [${b}]${tb ? "ᵀ" : ""}` });

const CASES = [
  conv("c64-fwd", "conv2d forward", [8, 32, 32, 64], [3, 3, 64, 64], 1, "fwd"),
  conv("c64-bin", "conv2d backprop input", [8, 32, 32, 64], [3, 3, 64, 64], 1, "bin"),
  conv("c64-bf", "conv2d backprop filter", [8, 32, 32, 64], [3, 3, 64, 64], 1, "bf"),
  conv("s2-fwd", "conv2d forward", [8, 32, 32, 64], [3, 3, 64, 64], 2, "fwd"),
  conv("s2-bin", "conv2d backprop input", [8, 32, 32, 64], [3, 3, 64, 64], 2, "bin"),
  conv("s2-bf", "conv2d backprop filter", [8, 32, 32, 64], [3, 3, 64, 64], 2, "bf"),
  conv("c128-fwd", "conv2d forward", [8, 16, 16, 128], [3, 3, 128, 128], 1, "fwd"),
  conv("c128-bin", "conv2d backprop input", [8, 16, 16, 128], [3, 3, 128, 128], 1, "bin"),
  conv("c128-bf", "conv2d backprop filter", [8, 16, 16, 128], [3, 3, 128, 128], 1, "bf"),
  mm("bmm", "batched matMul (attention P·V)", [64, 256, 64], [64, 64, 256], false, false),
  mm("bmm-tb", "batched matMul, Bᵀ (attention Q·Kᵀ)", [64, 256, 64], [64, 256, 64], false, true),
  mm("mm-ta", "matMul, Aᵀ (dense-layer dW)", [4096, 512], [4096, 512], true, false),
];

const ENGINES = {
  apt: "@apt/backend-cpu",
  stock: "tfjs-backend-wasm (stock)",
  cpu: "tfjs-backend-cpu (JS)",
};

// ---------------------------------------------------------------- child side

async function childTfjs(engine) {
  const tf = await import("@tensorflow/tfjs-core");
  let info;
  if (engine === "apt") {
    const { backend } = await import("../dist/index.js");
    await backend.init();
    info = backend.info();
  } else if (engine === "stock") {
    await import("@tensorflow/tfjs-backend-wasm");
    await tf.setBackend("wasm");
  } else {
    await import("@tensorflow/tfjs-backend-cpu");
    await tf.setBackend("cpu");
  }
  await tf.ready();
  for (const f of ["WASM_HAS_SIMD_SUPPORT", "WASM_HAS_MULTITHREAD_SUPPORT"]) {
    if (tf.env().flagRegistry[f]) await tf.env().getAsync(f);
  }

  const results = {};
  for (const c of CASES) {
    const inputs = [];
    const mk = (shape) => {
      const t = tf.randomNormal(shape, 0, 1, "float32", 7);
      inputs.push(t);
      return t;
    };
    let fn;
    if (c.kind === "mm") {
      const a = mk(c.a);
      const b = mk(c.b);
      fn = () => tf.matMul(a, b, c.ta, c.tb);
    } else {
      const x = mk(c.x);
      const w = mk(c.w);
      const outShape = tf.tidy(() => tf.conv2d(tf.zeros(c.x), tf.zeros(c.w), c.s, "same").shape);
      const dy = mk(outShape);
      const attrs = { strides: [c.s, c.s], pad: "same", dataFormat: "NHWC", dimRoundingMode: undefined };
      if (c.kind === "fwd") fn = () => tf.conv2d(x, w, c.s, "same");
      else if (c.kind === "bin") fn = () => tf.engine().runKernel("Conv2DBackpropInput", { dy, filter: w }, { ...attrs, inputShape: c.x });
      else fn = () => tf.engine().runKernel("Conv2DBackpropFilter", { x, dy }, { ...attrs, filterShape: c.w });
    }
    try {
      results[c.id] = timeIt(fn);
    } catch (e) {
      const msg = String(e?.message ?? e);
      results[c.id] = { na: /not registered/.test(msg) ? "kernel not registered" : msg.slice(0, 120) };
    }
    tf.dispose(inputs);
    process.stderr.write(`  ${engine} ${c.id}: ${results[c.id].ms?.toFixed(2) ?? results[c.id].na}\n`);
  }
  return { results, info, flags: tf.env().getFlags(), tfjsBackend: tf.getBackend() };
}

function timeIt(fn) {
  const once = () => {
    const t0 = performance.now();
    const r = fn();
    r.dataSync();
    const ms = performance.now() - t0;
    r.dispose();
    return ms;
  };
  const first = once();
  if (first > SLOW_MS) return { ms: first, timed: 1 };
  for (let i = 1; i < WARMUPS; i++) once();
  const ts = Array.from({ length: REPS }, once).sort((a, b) => a - b);
  return { ms: ts[REPS >> 1], timed: REPS, min: ts[0], max: ts[REPS - 1] };
}

/** Whether tfjs-backend-wasm can run threads in this Node: its own flag, our init with threads: 2, and a forced try. */
async function childThreads(mode) {
  const tf = await import("@tensorflow/tfjs-core");
  const wasm = await import("@tensorflow/tfjs-backend-wasm");
  const detected = await tf.env().getAsync("WASM_HAS_MULTITHREAD_SUPPORT");
  if (mode === "natural") {
    const { backend } = await import("../dist/index.js");
    await backend.init({ threads: 2 });
    return { detected, device: backend.info().device, threadsCount: wasm.getThreadsCount() };
  }
  // Force tfjs to load its threaded build (what a browser with cross-origin isolation gets).
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", true);
  wasm.setThreadsCount(2);
  const errors = [];
  const warn = console.warn;
  console.warn = (...a) => errors.push(a.map(String).join(" "));
  let ok = false;
  try {
    ok = await tf.setBackend("wasm");
  } catch (e) {
    errors.push(String(e?.message ?? e));
  }
  console.warn = warn;
  return { detected, forcedInit: ok, threadsCount: ok ? wasm.getThreadsCount() : 0, error: (errors.find((e) => /ERR_|Error[:\s]/.test(e)) ?? errors[0])?.split("\n")[0] };
}

// ---------------------------------------------------------------- torch

const TORCH = String.raw`
import json, sys, time
import torch
import torch.nn.functional as F
cases = json.loads(sys.argv[1]); reps, warm, slow = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
torch.set_num_threads(int(sys.argv[5]))
torch.manual_seed(7)
def time_it(fn):
    def once():
        t0 = time.perf_counter(); fn(); return (time.perf_counter() - t0) * 1000
    first = once()
    if first > slow: return {"ms": first, "timed": 1}
    for _ in range(warm - 1): once()
    ts = sorted(once() for _ in range(reps))
    return {"ms": ts[reps // 2], "timed": reps, "min": ts[0], "max": ts[-1]}
out = {}
with torch.no_grad():
    for c in cases:
        if c["kind"] == "mm":
            a = torch.randn(*c["a"]); b = torch.randn(*c["b"])
            A = a.transpose(-1, -2) if c["ta"] else a
            B = b.transpose(-1, -2) if c["tb"] else b
            fn = (lambda A=A, B=B: torch.matmul(A, B))
        else:
            n, h, w_, ci = c["x"]; kh, kw, _, co = c["w"]; s = c["s"]
            x = torch.randn(n, ci, h, w_); w = torch.randn(co, ci, kh, kw); p = kh // 2
            y = F.conv2d(x, w, stride=s, padding=p); dy = torch.randn_like(y)
            if c["kind"] == "fwd": fn = (lambda x=x, w=w, s=s, p=p: F.conv2d(x, w, stride=s, padding=p))
            elif c["kind"] == "bin": fn = (lambda x=x, w=w, dy=dy, s=s, p=p: torch.nn.grad.conv2d_input(x.shape, w, dy, stride=s, padding=p))
            else: fn = (lambda x=x, w=w, dy=dy, s=s, p=p: torch.nn.grad.conv2d_weight(x, w.shape, dy, stride=s, padding=p))
        out[c["id"]] = time_it(fn)
        sys.stderr.write("  torch %s: %.2f\n" % (c["id"], out[c["id"]]["ms"]))
print(json.dumps({"results": out, "version": torch.__version__, "threads": torch.get_num_threads()}))
`;

function runTorch(threads) {
  const python = "/usr/bin/python3";
  const check = spawnSync(python, ["-c", "import torch"], { encoding: "utf8" });
  if (check.status !== 0) return { skipped: `${python} -c "import torch" failed` };
  const r = spawnSync(python, ["-c", TORCH, JSON.stringify(CASES), String(REPS), String(WARMUPS), String(SLOW_MS), String(threads)], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 1 << 24,
  });
  if (r.status !== 0) return { skipped: `torch run failed (exit ${r.status})` };
  return JSON.parse(r.stdout);
}

// ---------------------------------------------------------------- parent side

function runChild(args, timeoutMs = 30 * 60_000) {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), ...args], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: timeoutMs,
    maxBuffer: 1 << 24,
  });
  const line = r.stdout.split("\n").find((l) => l.startsWith("{\"child\":"));
  for (const l of r.stderr.split("\n")) if (l.startsWith("  ")) process.stderr.write(l + "\n");
  if (!line) return { error: `child ${args.join(" ")} exited ${r.status ?? r.signal}: ${r.stderr.trim().split("\n").slice(-3).join(" | ")}` };
  return JSON.parse(line).child;
}

const fmt = (r) => (!r ? "–" : r.na ? "n/a" : r.ms >= 100 ? `${r.ms.toFixed(0)}${r.timed === 1 ? "*" : ""}` : `${r.ms.toFixed(2)}${r.timed === 1 ? "*" : ""}`);

function table(runs, torch) {
  const fwdOf = (c) => `${c.id.split("-")[0]}-fwd`;
  const head = ["op", "shape", "@apt/backend-cpu ms", "÷ its forward", "tfjs wasm (stock) ms", "tfjs cpu (JS) ms"];
  if (torch?.results) head.push(`PyTorch ${torch.version} ms`, "ours ÷ torch");
  const lines = [`| ${head.join(" | ")} |`, `|${head.map((_, i) => (i < 2 ? "---" : "--:")).join("|")}|`];
  for (const c of CASES) {
    const ours = runs.apt?.results?.[c.id];
    const fwd = runs.apt?.results?.[fwdOf(c)];
    const ratio = c.kind === "bin" || c.kind === "bf" ? (ours?.ms && fwd?.ms ? `${(ours.ms / fwd.ms).toFixed(2)}×` : "–") : "";
    const row = [c.op, c.shape, fmt(ours), ratio, fmt(runs.stock?.results?.[c.id]), fmt(runs.cpu?.results?.[c.id])];
    if (torch?.results) {
      const t = torch.results[c.id];
      row.push(fmt(t), ours?.ms && t?.ms ? `${(ours.ms / t.ms).toFixed(2)}` : "–");
    }
    lines.push(`| ${row.join(" | ")} |`);
  }
  return lines.join("\n");
}

async function main() {
  const argv = process.argv.slice(2);
  const child = argv.find((a) => a.startsWith("--child="))?.slice(8);
  if (child) {
    const out = child.startsWith("threads-") ? await childThreads(child.slice(8)) : await childTfjs(child);
    process.stdout.write(`${JSON.stringify({ child: out })}\n`);
    process.exit(0);
  }
  const json = argv.includes("--json");
  const skip = new Set((argv.find((a) => a.startsWith("--skip="))?.slice(7) ?? "").split(",").filter(Boolean));

  const runs = {};
  for (const engine of Object.keys(ENGINES)) {
    if (skip.has(engine)) continue;
    process.stderr.write(`${ENGINES[engine]}...\n`);
    runs[engine] = runChild([`--child=${engine}`]);
  }
  const threads = { natural: runChild(["--child=threads-natural"], 120_000), forced: runChild(["--child=threads-forced"], 60_000) };
  const ourThreads = Number(runs.apt?.info?.details?.threads ?? 1);
  let torch;
  if (!skip.has("torch")) {
    process.stderr.write("PyTorch...\n");
    torch = runTorch(ourThreads);
  }

  const machine = { cpu: cpus()[0]?.model ?? "unknown", cores: cpus().length, node: process.version, platform: `${process.platform} ${process.arch}` };
  if (json) {
    process.stdout.write(`${JSON.stringify({ machine, cases: CASES, runs, torch, threads, reps: REPS, warmups: WARMUPS }, null, 2)}\n`);
    return;
  }

  const out = [];
  out.push(`## @apt/backend-cpu kernel benchmark`, "");
  out.push(`${machine.cpu}, ${machine.cores} cores, Node ${machine.node} (${machine.platform}).`);
  out.push(`Median of ${REPS} calls after ${WARMUPS} warm-ups, result read back each call; * = one call (over ${SLOW_MS / 1000} s). ` + `Backprop kernels are called directly (tf.engine().runKernel). "n/a": the backend has no such kernel.`);
  if (torch?.results) out.push(`PyTorch: ${torch.threads} thread(s) (torch.set_num_threads, matching the wasm backend), NCHW, torch.nn.grad.conv2d_input / conv2d_weight, no_grad.`);
  else if (torch?.skipped) out.push(`PyTorch: skipped (${torch.skipped}).`);
  out.push("", table(runs, torch), "");
  for (const [engine, r] of Object.entries(runs)) if (r.error) out.push(`- ${ENGINES[engine]}: ${r.error}`);
  if (runs.apt?.info) {
    const i = runs.apt.info;
    out.push(`### @apt/backend-cpu`, "", `- device: ${i.device}; tfjs backend "${i.tfjsBackend}"; custom kernels: ${i.customKernels.join(", ")}`);
    out.push(`- tfjs flags: ${Object.entries(runs.apt.flags).map(([k, v]) => `${k}=${v}`).join(", ")}`, "");
  }
  out.push(`### WASM threads in Node`, "");
  const n = threads.natural;
  const f = threads.forced;
  out.push(n.error ? `- init({ threads: 2 }): ${n.error}` : `- tfjs's WASM_HAS_MULTITHREAD_SUPPORT in Node: ${n.detected} (tfjs hard-codes false under Node); backend.init({ threads: 2 }) runs as "${n.device}" (getThreadsCount() = ${n.threadsCount}).`);
  out.push(f.error && !("forcedInit" in f) ? `- forcing the threaded build: ${f.error}` : `- forcing the threaded build (flag set true, setThreadsCount(2)): ${f.forcedInit ? `initialised with ${f.threadsCount} threads` : `init failed: ${f.error ?? "no message"}`}.`);
  process.stdout.write(out.join("\n") + "\n");
}

await main();
