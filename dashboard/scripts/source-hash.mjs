// The SHA-256 of everything the build is made from, recorded next to the
// build (dist/SOURCES.sha256) by `npm run build`. The server's test suite
// computes the same hash (tests/dashboard_build.rs) and fails when the
// committed build was made from other sources: a stale build.
//
// What is hashed, in order of path: index.html, package.json,
// package-lock.json, tsconfig.json, vite.config.ts and every file under
// src/ and public/, each as "<path>\0<length>\0<bytes>".
//
//   node scripts/source-hash.mjs         prints the hash
//   node scripts/source-hash.mjs write   writes it to dist/SOURCES.sha256
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const FILES = ["index.html", "package.json", "package-lock.json", "tsconfig.json", "vite.config.ts"];
const DIRS = ["src", "public"];

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path, out);
    else out.push(relative(root, path).split("\\").join("/"));
  }
  return out;
}

export function sourceHash() {
  const files = [...FILES, ...DIRS.flatMap((d) => walk(join(root, d), []))].sort();
  const hash = createHash("sha256");
  for (const file of files) {
    const bytes = readFileSync(join(root, file));
    hash.update(`${file}\0${bytes.length}\0`);
    hash.update(bytes);
  }
  return hash.digest("hex");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const hash = sourceHash();
  if (process.argv[2] === "write") writeFileSync(join(root, "dist", "SOURCES.sha256"), `${hash}\n`);
  console.log(hash);
}
