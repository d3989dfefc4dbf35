#!/bin/sh
# valgrind wrapper for the integration harness: any memcheck error or definite leak
# makes huiqid exit 99, which the harness reports as a failed stop. Use it as
#   python3 tests/integration/run.py --huiqid tests/valgrind_huiqid.sh --sanitized
# (--sanitized relaxes the harness's time limits). HUIQID picks another build.
here=$(cd "$(dirname "$0")/.." && pwd)
exec valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
     --show-leak-kinds=definite --num-callers=25 "${HUIQID:-$here/build/huiqid}" "$@"
