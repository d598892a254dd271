# Stands in for the C end-to-end tests when configure found no librabbitmq-c.
echo "not ok 1 - C end-to-end tests need librabbitmq-c: install librabbitmq-dev and re-run configure"
echo "1..1"
exit 1
