#!/bin/sh
# check-registered.sh DIR NAME...: fails when DIR holds a test-*.c,
# test-*.sh or test-*.py file whose name (without its extension) is not
# one of the NAMEs tests/meson.build registered, so that a test file
# nothing runs is an error rather than silently never run.
dir=$1
shift
status=0
for file in "$dir"/test-*.c "$dir"/test-*.sh "$dir"/test-*.py; do
    [ -e "$file" ] || continue
    name=$(basename "$file")
    name=${name%.*}
    case " $* " in
    *" $name "*) ;;
    *)
        echo "check-registered: $file is not registered in tests/meson.build" >&2
        status=1
        ;;
    esac
done
[ $status -eq 0 ] && echo "check-registered: every test file in $dir is registered"
exit $status
