// The README's pictures, from a running demo:
//   tokenwatch demo --listen 127.0.0.1:8080   (prints the one-time password)
//   node scripts/e2e/screenshots.mjs http://127.0.0.1:8080 admin PASSWORD docs/screenshots
// Uses Debian's chromium (never a downloaded browser).
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [base, user, pw, out] = process.argv.slice(2);
fs.mkdirSync(out, { recursive: true });
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tw-shots-"));
const ctx = await chromium.launchPersistentContext(dir, {
  executablePath: "/usr/bin/chromium", headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync"],
  viewport: { width: 1440, height: 900 },
});
const page = await ctx.newPage();
await page.goto(base + "/login");
await page.fill("input[name=username]", user);
await page.fill("input[name=password]", pw);
await page.click("button.primary");
await page.waitForURL(base + "/");
await page.waitForTimeout(1500);
await page.screenshot({ path: path.join(out, "overview.png") });
// The richest incident: impossible travel with the most findings.
await page.goto(base + "/incidents?kind=impossible_travel");
await page.screenshot({ path: path.join(out, "incidents.png") });
const links = await page.locator("table.list tbody tr td:nth-child(2) a").all();
let best = null, most = 0;
for (const row of await page.locator("table.list tbody tr").all()) {
  const n = parseInt(await row.locator("td.num").textContent(), 10);
  if (n > most) { most = n; best = await row.locator("td:nth-child(2) a").getAttribute("href"); }
}
await page.goto(base + (best || (await links[0].getAttribute("href"))));
await page.screenshot({ path: path.join(out, "incident.png") });
await page.goto(base + "/rules");
await page.screenshot({ path: path.join(out, "rules.png") });
await ctx.close();
fs.rmSync(dir, { recursive: true, force: true });
console.log("screenshots in", out);
