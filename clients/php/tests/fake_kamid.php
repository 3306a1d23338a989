<?php

// A misbehaving stand-in for kamid, for the client's failure tests. Listens on 127.0.0.1
// port 0, prints the port on stdout, answers `hello` properly and every other request as
// MODE says:
//   garbage       a line that is not JSON (and holds a fake secret)
//   noeol         a partial reply without its newline, then silence
//   silent        nothing (the client must time out)
//   wrongid       a well-formed reply with another id
//   eof           closes the connection on the request
//   busy_then_ok  BUSY to the first request, ok to the ones after
//   expired       EXPIRED, as kamid answers an activation token past its time
// Exits when its stdin closes (the test is done) or after 60 s.

declare(strict_types=1);

$mode = $argv[1] ?? 'garbage';
$server = stream_socket_server('tcp://127.0.0.1:0', $errno, $errstr);
if ($server === false) {
    fwrite(STDERR, "listen: $errstr\n");
    exit(1);
}
$name = stream_socket_get_name($server, false);
echo substr($name, strrpos($name, ':') + 1), "\n";
fflush(STDOUT);

$end = microtime(true) + 60;
$clients = [];
$buffers = [];
$served = 0;
stream_set_blocking(STDIN, false);
while (microtime(true) < $end) {
    $read = [$server, STDIN, ...array_values($clients)];
    $w = $e = null;
    if (@stream_select($read, $w, $e, 0, 200000) === false) {
        break;
    }
    foreach ($read as $s) {
        if ($s === STDIN) {
            if (fread(STDIN, 1024) === '' && feof(STDIN)) {
                exit(0);
            }
            continue;
        }
        if ($s === $server) {
            $c = @stream_socket_accept($server, 1);
            if ($c !== false) {
                $clients[(int) $c] = $c;
                $buffers[(int) $c] = '';
            }
            continue;
        }
        $data = @fread($s, 65536);
        if ($data === false || $data === '') {
            unset($clients[(int) $s], $buffers[(int) $s]);
            fclose($s);
            continue;
        }
        $buffers[(int) $s] .= $data;
        while (($nl = strpos($buffers[(int) $s], "\n")) !== false) {
            $line = substr($buffers[(int) $s], 0, $nl);
            $buffers[(int) $s] = substr($buffers[(int) $s], $nl + 1);
            $req = json_decode($line, true);
            $id = is_array($req) ? ($req['id'] ?? null) : null;
            if (is_array($req) && ($req['op'] ?? '') === 'hello') {
                fwrite($s, json_encode(['id' => $id, 'ok' => true, 'protocol' => 1, 'server' => 'fake', 'features' => []]) . "\n");
                continue;
            }
            $served++;
            switch ($mode) {
                case 'garbage':
                    fwrite($s, "<html>500 FAKE-SECRET-0000 oops</html>\n");
                    break;
                case 'noeol':
                    fwrite($s, '{"id":' . json_encode($id) . ',"ok":true,"secret":"FAKE-SECRET-0000"');
                    break;
                case 'silent':
                    break;
                case 'wrongid':
                    fwrite($s, json_encode(['id' => 'not-' . $id, 'ok' => true]) . "\n");
                    break;
                case 'eof':
                    unset($clients[(int) $s], $buffers[(int) $s]);
                    fclose($s);
                    continue 3;
                case 'expired':
                    fwrite($s, json_encode(['id' => $id, 'ok' => false, 'error' => ['code' => 'EXPIRED',
                        'message' => 'the activation token has expired; open the link again from the order']]) . "\n");
                    break;
                case 'busy_then_ok':
                    if ($served === 1) {
                        fwrite($s, json_encode(['id' => $id, 'ok' => false, 'error' => ['code' => 'BUSY', 'message' => 'commit queue full']]) . "\n");
                    } else {
                        fwrite($s, json_encode(['id' => $id, 'ok' => true, 'sku' => 'x', 'available' => 1, 'reserved' => 0, 'issued' => 0, 'voided' => 0, 'imported' => 1]) . "\n");
                    }
                    break;
            }
        }
    }
}
