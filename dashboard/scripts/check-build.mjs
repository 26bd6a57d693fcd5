// Rebuilds the dashboard in a temporary directory and compares the result,
// file by file, with the committed dist/: fails (exit 1, naming the files)
// when they differ, so a build that was not redone after a change, or was
// edited by hand, cannot pass. scripts/test.sh runs it.
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const work = mkdtempSync(join(tmpdir(), "switchboard-dashboard-"));

function files(dir) {
  const out = [];
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      if (statSync(path).isDirectory()) walk(path);
      else out.push(relative(dir, path));
    }
  };
  walk(dir);
  return out.sort();
}

try {
  for (const entry of ["index.html", "package.json", "package-lock.json", "tsconfig.json", "vite.config.ts", "src", "public", "scripts"]) {
    cpSync(join(root, entry), join(work, entry), { recursive: true });
  }
  symlinkSync(join(root, "node_modules"), join(work, "node_modules"), "dir");
  execFileSync("npm", ["run", "build", "--silent"], { cwd: work, stdio: ["ignore", "ignore", "inherit"] });
  const committed = files(join(root, "dist"));
  const rebuilt = files(join(work, "dist"));
  const problems = [];
  for (const file of new Set([...committed, ...rebuilt])) {
    if (!committed.includes(file)) problems.push(`${file}: built but not committed`);
    else if (!rebuilt.includes(file)) problems.push(`${file}: committed but no longer built`);
    else if (!readFileSync(join(root, "dist", file)).equals(readFileSync(join(work, "dist", file))))
      problems.push(`${file}: differs from a fresh build`);
  }
  if (problems.length) {
    console.error("dashboard/dist is stale; run `npm run build` in dashboard/ and commit dist/:");
    for (const p of problems) console.error(`  ${p}`);
    process.exit(1);
  }
  console.log(`dashboard/dist matches a fresh build (${committed.length} files)`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
