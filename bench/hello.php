<?php
// The hello application of the PHP-FPM peer (bench/fastcgi_bench.ts).
header("Content-Type: text/plain");
echo "Hello world!\n";
