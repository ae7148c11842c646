/**
 * Playwright configuration: Galata's defaults, Debian's chromium (Playwright's browsers are not
 * downloaded), no video, and time for the real model to load and answer on a CPU.
 */
const baseConfig = require('@jupyterlab/galata/lib/playwright-config');

// Another JupyterLab on the machine may hold 8888: GEMMA_NB_UI_PORT moves the test server.
const port = process.env.GEMMA_NB_UI_PORT ?? '8888';

module.exports = {
  ...baseConfig,
  timeout: 5 * 60 * 1000, // the first command may export the default model (about a minute)
  expect: { timeout: 20 * 1000 },
  workers: 1, // one JupyterLab, one model per kernel: tests share the machine's cores
  // One retry in CI, as JupyterLab's own UI tests do: these tests start real kernels and the
  // real model on 2 shared cores. Playwright still lists a test that needed it as "flaky", and
  // one failing twice fails the run. (The not-installed case, once missed under load, was a lost
  // notice update fixed in the extension, #7: 10 of 10 passes without retries.)
  retries: process.env.CI ? 1 : 0,
  use: {
    ...baseConfig.use,
    baseURL: `http://localhost:${port}`,
    video: 'off',
    trace: 'off',
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync'
      ]
    }
  },
  webServer: {
    command: `jlpm start --ServerApp.port=${port}`,
    url: `http://localhost:${port}/lab`,
    timeout: 120 * 1000,
    reuseExistingServer: !process.env.CI
  }
};
