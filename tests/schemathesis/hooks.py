"""Keeps what schemathesis generates from reaching outside the test.

The run happens in a network namespace with nothing but loopback, so no
generated webhook URL or TCP modem address can reach another host. Device
paths are not namespaced: a generated `serial` driver is pointed at a path
that does not exist, so the fuzzer never opens a real serial port. The
simulator's random traffic is capped at one event a second so a generated
`rate` cannot flood the log. Each rewrite keeps the value's type, so a case
stays as valid (or as invalid) as it was generated.
"""

import schemathesis


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    body = case.body
    if not isinstance(body, dict):
        return
    driver = body.get("driver")
    if not isinstance(driver, dict):
        return
    port = driver.get("port")
    if isinstance(port, str) and port.strip():
        driver["port"] = "/nonexistent/switchboard-schemathesis-tty"
    rate = driver.get("rate")
    if isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 1:
        driver["rate"] = 1
