"""Refused logins as an unmodified kafka-python 3.x sees them.

Usage: sec_kp_login_errors_unpatched.py BOOTSTRAP CA_FILE USER PASSWORD ATTEMPTS

kafka-python 3.x drops response bytes that arrive in the same read as the
end of the stream (see sec_common.kp_deliver_data_before_eof). Kafka keeps
a refused connection open for connection.failed.authentication.delay.ms
(100 ms by default, KIP-306) after the error response, so against Kafka
the client sees the error code. This counts, without the workaround, how
many of ATTEMPTS wrong-password and PLAIN logins surface the Kafka error
(58 / 33) rather than a bare 'socket disconnected', and requires 90%.
"""

import sys

import kafka.errors as Errors

from sec_common import check, kp_conf, kp_try_login, log


def main():
    bootstrap, ca, user, password, attempts = sys.argv[1:6]
    attempts = int(attempts)
    for what, conf, cls in [
        ("wrong password", kp_conf(bootstrap, ca, user, password + "x"), Errors.SaslAuthenticationFailedError),
        ("PLAIN", kp_conf(bootstrap, ca, user, password, mechanism="PLAIN"), Errors.UnsupportedSaslMechanismError),
    ]:
        outcomes = {}
        for _ in range(attempts):
            e = kp_try_login(conf, deliver_data_before_eof=False)
            name = type(e).__name__
            outcomes[name] = outcomes.get(name, 0) + 1
        log(f"{what}: {outcomes}")
        check(outcomes.get(cls.__name__, 0) >= 0.9 * attempts,
              f"{what}: only {outcomes.get(cls.__name__, 0)} of {attempts} attempts surfaced "
              f"{cls.__name__}; the others lost the error response: {outcomes}")
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
