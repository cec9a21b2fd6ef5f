# buildbot-worker 4.3.0 as in buildbot-worker-4.sh, plus Twisted's `tls` extra
# (pyOpenSSL, service-identity), which a worker needs for a `tls:` connection string.
# A venv of its own, so the plain worker's venv stays exactly what users get by default.
"$(pyenv_python 3.11)" -m venv "$dest"
"$dest/bin/pip" install -q --no-deps \
  buildbot-worker==4.3.0 Twisted==26.10.0 \
  attrs==26.1.0 autobahn==26.10.2 Automat==25.4.16 cbor2==6.3.0 cffi==2.1.1 \
  constantly==23.10.4 cryptography==50.0.2 hyperlink==21.0.0 idna==3.20 \
  Incremental==24.11.0 msgpack==1.2.4 packaging==26.4 pycparser==3.12 txaio==26.6.1 \
  typing_extensions==4.16.0 ujson==6.1.0 zope.interface==8.7 \
  pyOpenSSL==26.4.0 service-identity==26.1.0 pyasn1==0.6.5 pyasn1-modules==0.4.2
"$dest/bin/pip" check
