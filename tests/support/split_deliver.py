"""Splits a text into SMS parts with an SMS library nobody here wrote
(python-gsmmodem's PDU encoder), the way a careless sender would, and
prints them as SMS-DELIVER PDUs, the form a modem reports them in.

Input (stdin, JSON): {"sender": "+15551234567", "text": "...", "reference": 7}.
The text is handed to the library as UTF-16 code units (an emoji as its
two surrogates), which it counts as characters, and a literal ESC
("\\u001b") counts as one GSM-7 septet, so a text can be made that the
library cuts inside an emoji or between an escape and its character.
Output (stdout, JSON): a list of hex PDUs with an empty SMSC prefix.

The library makes SMS-SUBMIT PDUs; the user data (header, length, units)
is taken from them unchanged, and only the envelope around it is rewritten
into SMS-DELIVER's (TS 23.040 9.2.2.1): first octet, originating address,
PID, DCS, service centre time stamp.
"""

import json
import sys

from gsmmodem import pdu as gsm_pdu


def semi_octet(value):
    return ((value % 10) << 4) | (value // 10)


def deliver_from_submit(submit):
    data = bytes(submit.data)
    i = 1 + data[0]  # SMSC information
    first = data[i]
    assert first & 0x03 == 0x01, "an SMS-SUBMIT"
    i += 2  # first octet, TP-MR
    digits = data[i]
    address = data[i : i + 2 + (digits + 1) // 2]
    i += len(address)
    pid, dcs = data[i], data[i + 1]
    i += 2
    vpf = (first >> 3) & 0x03
    i += {0: 0, 2: 1}.get(vpf, 7)
    user_data = data[i:]  # TP-UDL and TP-UD, as the library made them
    # 2026-01-02 03:04:05, UTC.
    scts = bytes(semi_octet(v) for v in (26, 1, 2, 3, 4, 5, 0))
    deliver_first = 0x04 | (first & 0x40)  # MTI 00, no more messages, UDHI
    return (bytes([0x00, deliver_first]) + address + bytes([pid, dcs]) + scts + user_data).hex().upper()


def as_code_units(text):
    """The text as a string of UTF-16 code units, surrogates standing alone."""
    raw = text.encode("utf-16-be")
    return "".join(chr(int.from_bytes(raw[i : i + 2], "big")) for i in range(0, len(raw), 2))


def main():
    request = json.load(sys.stdin)
    submits = gsm_pdu.encodeSmsSubmitPdu(
        request["sender"],
        as_code_units(request["text"]),
        reference=request.get("reference", 1),
        requestStatusReport=False,
    )
    json.dump([deliver_from_submit(s) for s in submits], sys.stdout)


if __name__ == "__main__":
    main()
