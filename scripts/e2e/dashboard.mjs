// End-to-end test of the tokenwatch dashboard in Debian's headless Chromium
// (never a downloaded browser), driven by playwright-core. Started by
// tests/dashboard.rs, which runs `tokenwatch run` with the dashboard, Kafka
// and the OpenID provider, and passes in:
//   TW_URL          the dashboard
//   TW_REPLAY       JSON argv that replays the attack into Kafka (run from TW_REPLAY_CWD)
//   TW_SHOTS        where screenshots go
//   TW_RESPONDER, TW_VIEWER, TW_ADMIN   user:password
// Prints progress on stderr and, last on stdout, a JSON line with results.
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import http from "node:http";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const base = process.env.TW_URL;
const shots = process.env.TW_SHOTS;
const [responder, responderPw] = process.env.TW_RESPONDER.split(":");
const [viewer, viewerPw] = process.env.TW_VIEWER.split(":");
const [admin, adminPw] = process.env.TW_ADMIN.split(":");
const log = (...a) => console.error("[e2e]", ...a);

function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
  log("ok:", what);
}

async function browser() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tw-chromium-"));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--no-first-run", "--disable-sync"],
    viewport: { width: 1440, height: 900 },
  });
  ctx.setDefaultTimeout(30000);
  return { ctx, dir };
}

async function login(page, user, pw) {
  await page.goto(base + "/incidents");
  check(page.url().startsWith(base + "/login"), `${user}: the dashboard asks to log in first`);
  await shot(page, "login");
  await page.fill("input[name=username]", user);
  await page.fill("input[name=password]", pw);
  await page.click("button.primary");
  await page.waitForURL(base + "/incidents");
  check(await page.locator(".who .user").textContent() === user, `${user} is logged in`);
}

async function shot(page, name, full = true) {
  await page.screenshot({ path: path.join(shots, name + ".png"), fullPage: full });
}

function replay() {
  const argv = JSON.parse(process.env.TW_REPLAY);
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0], argv.slice(1), { cwd: process.env.TW_REPLAY_CWD, stdio: ["ignore", "ignore", "inherit"] });
    p.on("exit", (code) => (code === 0 ? resolve() : reject(new Error("replay exited " + code))));
  });
}

const result = {};
const errors = [];
const { ctx, dir } = await browser();
const page = await ctx.newPage();
// Script errors fail the test; failed loads do not (the forged POST's 403 is expected).
page.on("console", (m) => { if (m.type() === "error" && !/Failed to load resource/.test(m.text())) errors.push(m.text()); });
page.on("pageerror", (e) => errors.push(String(e)));
try {
  // 1. Log in; the overview shows.
  await login(page, responder, responderPw);
  await page.goto(base + "/");
  check(await page.locator("h1").first().textContent() === "Overview", "the overview renders");

  // 2. The live feed while the replay runs; pausing loses nothing.
  await page.goto(base + "/live");
  await page.locator("#live-status", { hasText: "live" }).waitFor();
  await page.click("#pause");
  const replayDone = replay();
  await page.locator("#waiting", { hasText: "new while paused" }).waitFor({ timeout: 90000 });
  check(await page.locator("#feed tbody tr").count() === 0, "nothing is shown while paused");
  await replayDone;
  // The replay has ended, but the stream may still be delivering on a slow
  // machine: wait until the queued count holds still for 2 s (at most 60 s).
  let waiting = -1;
  for (let i = 0, same = 0; i < 120 && same < 4; i++) {
    const n = parseInt(await page.locator("#waiting").textContent(), 10);
    same = n === waiting ? same + 1 : 0;
    waiting = n;
    await page.waitForTimeout(500);
  }
  await page.click("#pause");
  const rows = await page.locator("#feed tbody tr").count();
  check(rows === waiting && rows > 0, `resuming shows all ${waiting} items that arrived while paused`);
  const findingRows = page.locator("#feed tbody tr.finding");
  check(await findingRows.count() > 0, "findings arrived live");
  await page.waitForTimeout(2500);
  check(/events\/s/.test(await page.locator("#counts").textContent()), "live counters update");
  await page.selectOption("#f-kind", "action");
  check(await page.locator("#feed tbody tr.finding:visible").count() === 0, "the kind filter hides findings");
  await page.selectOption("#f-kind", "");
  await shot(page, "live", false);

  // 3. Incidents, and the incident with its map, timeline and math.
  await page.goto(base + "/incidents?kind=token_replay");
  const first = page.locator("table.list tbody tr td:nth-child(2) a").first();
  await first.waitFor();
  await shot(page, "incidents", false);
  await first.click();
  await page.waitForURL(/\/incidents\/i-/);
  const incidentUrl = page.url();
  check(await page.locator("svg.map circle.pt").count() >= 2, "the map shows where the token was used");
  check(await page.locator("svg.map line.jump").count() >= 1, "the map shows the jump");
  check(/km/.test(await page.locator("p.math").first().textContent()), "the jump's distance and speed are spelled out");
  check(await page.locator("svg.chart rect.bar-f").count() >= 1, "the timeline shows the token's requests");
  check((await page.locator(".finding .summary").allTextContents()).some((t) => /python-requests/.test(t)), "the evidence names the scripting client");
  check(await page.locator("text=Devices seen").count() === 1 && await page.locator(".tag.bad", { hasText: "scripting" }).count() >= 1, "the devices list flags the scripting client");
  await shot(page, "incident");

  // 4. Revoke by hand as a responder, through the confirmation step.
  const revokeLink = page.locator("a.button.danger").first();
  const linkText = await revokeLink.textContent();
  const tokenId = linkText.replace(/^Revoke token /, "").replace(/…$/, "").trim();
  result.revoked_token_id = tokenId;
  await revokeLink.click();
  await page.waitForURL(/\/tokens\/.+\/revoke/);
  await shot(page, "confirm-revoke", false);
  await page.fill("input[name=reason]", "confirmed theft: replay from a datacenter");
  await page.check("input[name=confirm]");
  await page.click("button.danger");
  await page.waitForURL(new RegExp(incidentUrl.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "\\?done="));
  check(/Revocation .* queued/.test(await page.locator(".flash").textContent()), "the revocation is queued");
  // The delivery to the IdP shows up on the incident.
  let delivered = false;
  for (let i = 0; i < 60 && !delivered; i++) {
    await page.reload();
    delivered = await page.locator("td", { hasText: "idp" }).locator(".st-delivered").count() > 0;
    if (!delivered) await page.waitForTimeout(1000);
  }
  check(delivered, "the incident shows the revocation delivered to the IdP");
  await shot(page, "incident-revoked");

  // 5. An admin switches a rule's mode; the rules page says so.
  const { ctx: actx, dir: adir } = await browser();
  const ap = await actx.newPage();
  await ap.goto(base + "/login");
  await ap.fill("input[name=username]", admin);
  await ap.fill("input[name=password]", adminPw);
  await ap.click("button.primary");
  await ap.waitForURL(base + "/");
  await shot(ap, "overview");
  await ap.goto(base + "/rules");
  await ap.click("form[action='/rules/stolen-token/mode'] button");
  await ap.waitForURL(base + "/rules");
  check(await ap.locator("tr", { hasText: "stolen-token" }).locator(".mode-enforce").count() === 1, "an admin switched the rule to enforce");
  await shot(ap, "rules");
  await ap.goto(base + "/actions");
  await shot(ap, "actions");
  await ap.goto(base + "/audit");
  check(await ap.locator("td", { hasText: "revoke requested" }).count() >= 1, "the audit page lists the manual revocation");
  await shot(ap, "audit");
  await actx.close();
  fs.rmSync(adir, { recursive: true, force: true });

  // 6. A viewer sees the incident but cannot act.
  const { ctx: vctx, dir: vdir } = await browser();
  const vp = await vctx.newPage();
  await vp.goto(base + "/login");
  await vp.fill("input[name=username]", viewer);
  await vp.fill("input[name=password]", viewerPw);
  await vp.click("button.primary");
  await vp.waitForURL(base + "/");
  await vp.goto(incidentUrl);
  check(await vp.locator("a.button.danger").count() === 0, "a viewer gets no revoke button");
  const r = await vp.goto(base + "/tokens/" + encodeURIComponent(tokenId) + "/revoke");
  check(r.status() === 403 && /responder role/.test(await vp.content()), "a viewer is refused the revocation page");
  await vctx.close();
  fs.rmSync(vdir, { recursive: true, force: true });

  // 7. A forged cross-site POST (another origin, the responder's cookie
  // attached by the browser) is refused; the incident stays as it was.
  const incidentPath = new URL(incidentUrl).pathname;
  const evil = http.createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(`<form id=f method=post action="${base}${incidentPath}/resolve"><input name=csrf value=guessed></form>
             <script>document.getElementById('f').submit()</script>`);
  });
  await new Promise((ok) => evil.listen(0, "127.0.0.1", ok));
  const evilUrl = `http://127.0.0.1:${evil.address().port}/`;
  const forged = await page.goto(evilUrl);
  await page.waitForURL(new RegExp(incidentPath + "/resolve"));
  const body = await page.content();
  check(/cross-site request refused|CSRF/.test(body), "the forged cross-site POST is refused");
  evil.close();
  await page.goto(incidentUrl.split("?")[0]);
  check(await page.locator(".badges .status").first().textContent() !== "resolved", "the incident was not resolved by the forgery");
  result.forged_status = forged ? forged.status() : null;

  // 8. Single sign-on through the OpenID provider (authorization code + PKCE).
  if (process.env.TW_SSO_USER) {
    const ssoLogin = async (user) => {
      const b = await browser();
      const p = await b.ctx.newPage();
      await p.goto(base + "/login");
      await p.click("a.sso");
      await p.waitForURL(/\/interaction\//);
      await p.fill("input[name=login]", user);
      await p.fill("input[name=password]", "any");
      await p.click("button[type=submit]");
      await p.waitForURL(/\/interaction\/|\/login\/oidc\/callback|\/$/);
      if (/\/interaction\//.test(p.url())) await p.click("button[type=submit]"); // consent
      return { ...b, p };
    };
    const ok = await ssoLogin(process.env.TW_SSO_USER);
    await ok.p.waitForURL(base + "/");
    check(await ok.p.locator(".who .user").textContent() === process.env.TW_SSO_USER, "single sign-on through the OpenID provider logs in with the mapped role");
    await shot(ok.p, "sso-overview", false);
    await ok.ctx.close();
    fs.rmSync(ok.dir, { recursive: true, force: true });
    const no = await ssoLogin("mallory");
    await no.p.waitForURL(/\/login\/oidc\/callback/);
    check(/has no role here/.test(await no.p.content()), "a provider account without a role is refused");
    await no.ctx.close();
    fs.rmSync(no.dir, { recursive: true, force: true });
  }

  check(errors.length === 0, "no script errors in the browser: " + errors.join("; "));
} catch (e) {
  await shot(page, "failure").catch(() => {});
  log("FAILED:", e.message);
  process.exitCode = 1;
} finally {
  await ctx.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
