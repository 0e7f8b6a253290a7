// The dashboard in headless Chromium (Debian's), driven by puppeteer-core (npm; installed by
// scripts/setup.sh in $CIRO_PUPPETEER_DIR):
//
//   node dashboard.cjs URL SCREENSHOT.png EXPECT_JSON
//
// EXPECT_JSON = {"jobs": {"<id>": "<state>"}, "workers": {"<address>": "<state>"},
// "counts": {"<state>": n}}. Waits until the page shows every job and worker in its state, the
// job counts and the chain's accounting totals, saves a screenshot and prints READY; then
// reads job ids from stdin, one per line, and for each waits until the page shows it (it
// arrives live through the server-sent event stream, without a reload) and prints LIVE <id>.
"use strict";
const path = require("path");
const readline = require("readline");
const dir = process.env.CIRO_PUPPETEER_DIR;
if (!dir) throw new Error("CIRO_PUPPETEER_DIR is not set (source scripts/env.sh)");
const puppeteer = require(path.join(dir, "node_modules", "puppeteer-core"));

const [url, screenshot, expectJson] = process.argv.slice(2);
const expected = JSON.parse(expectJson);
const WAIT = { timeout: 60000 };

(async () => {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM ||
      require("child_process").execSync("command -v chromium", { shell: "/bin/sh" })
        .toString().trim(),
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.setViewport({ width: 1400, height: 1000 });
    await page.goto(url, { waitUntil: "domcontentloaded" });
    for (const [id, state] of Object.entries(expected.jobs || {})) {
      await page.waitForSelector(`tr[data-job="${id}"][data-state="${state}"]`, WAIT);
    }
    for (const [address, state] of Object.entries(expected.workers || {})) {
      await page.waitForSelector(`tr[data-worker="${address}"][data-state="${state}"]`, WAIT);
    }
    for (const [state, count] of Object.entries(expected.counts || {})) {
      await page.waitForFunction((s, n) => {
        const tile = document.querySelector(`[data-count="${s}"] b`);
        return tile && tile.textContent === String(n);
      }, WAIT, state, count);
    }
    // The accounting totals were read from the chain.
    await page.waitForFunction(
      () => document.getElementById("accounting").querySelectorAll(".tile").length === 6, WAIT);
    await page.waitForFunction(
      () => document.getElementById("status").textContent === "live", WAIT);
    await page.screenshot({ path: screenshot, fullPage: true });
    if (errors.length) throw new Error(`script errors on the page: ${errors.join("; ")}`);
    console.log("READY");
    const lines = readline.createInterface({ input: process.stdin });
    for await (const line of lines) {
      const id = line.trim();
      if (!id) continue;
      await page.waitForSelector(`tr[data-job="${id}"]`, WAIT);
      await page.waitForSelector(`tr[data-transition="${id}:queued"]`, WAIT);
      console.log(`LIVE ${id}`);
    }
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
