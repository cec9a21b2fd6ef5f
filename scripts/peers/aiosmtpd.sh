# aiosmtpd 1.4.6: a real SMTP server (STARTTLS, AUTH PLAIN and LOGIN) on loopback for the
# email reporter's tests (CPython 3.11); every package pinned.
"$(pyenv_python 3.11)" -m venv "$dest"
"$dest/bin/pip" install -q --no-deps aiosmtpd==1.4.6 atpublic==5.1 attrs==25.3.0
"$dest/bin/pip" check
