<?php

// A TCP proxy in front of kamid that loses one reply: it forwards everything, but the first
// time a client sends a request whose op is OP (default issue) it lets kamid process it,
// reads kamid's reply, and then drops both connections instead of passing the reply on.
// The client saw a broken connection; kamid did the work. Listens on 127.0.0.1 port 0 and
// prints the port; exits when its stdin closes or after 60 s.
//
//   php flaky_proxy.php KAMID_PORT [OP]

declare(strict_types=1);

$upstreamPort = (int) ($argv[1] ?? 0);
$dropOp = $argv[2] ?? 'issue';
$server = stream_socket_server('tcp://127.0.0.1:0', $errno, $errstr);
if ($server === false || $upstreamPort <= 0) {
    fwrite(STDERR, "usage: flaky_proxy.php KAMID_PORT [OP]\n");
    exit(1);
}
$name = stream_socket_get_name($server, false);
echo substr($name, strrpos($name, ':') + 1), "\n";
fflush(STDOUT);

$pairs = [];    // client id => [client, upstream, client line buffer, dropping]
$peerOf = [];   // stream id => client id
$dropped = false;
$end = microtime(true) + 60;
stream_set_blocking(STDIN, false);

$closePair = static function (int $cid) use (&$pairs, &$peerOf): void {
    if (!isset($pairs[$cid])) {
        return;
    }
    [$c, $u] = $pairs[$cid];
    unset($peerOf[(int) $c], $peerOf[(int) $u], $pairs[$cid]);
    @fclose($c);
    @fclose($u);
};

while (microtime(true) < $end) {
    $read = [$server, STDIN];
    foreach ($pairs as $p) {
        $read[] = $p[0];
        $read[] = $p[1];
    }
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
            if ($c === false) {
                continue;
            }
            $u = @stream_socket_client("tcp://127.0.0.1:$upstreamPort", $en, $es, 3);
            if ($u === false) {
                fclose($c);
                continue;
            }
            $pairs[(int) $c] = [$c, $u, '', false];
            $peerOf[(int) $c] = (int) $c;
            $peerOf[(int) $u] = (int) $c;
            continue;
        }
        $cid = $peerOf[(int) $s] ?? null;
        if ($cid === null || !isset($pairs[$cid])) {
            continue;
        }
        [$c, $u] = $pairs[$cid];
        $data = @fread($s, 65536);
        if ($data === false || $data === '') {
            $closePair($cid);
            continue;
        }
        if ($s === $c) {
            // Client to kamid: watch the lines for the op whose reply is to be lost.
            $pairs[$cid][2] .= $data;
            while (($nl = strpos($pairs[$cid][2], "\n")) !== false) {
                $line = substr($pairs[$cid][2], 0, $nl);
                $pairs[$cid][2] = substr($pairs[$cid][2], $nl + 1);
                $req = json_decode($line, true);
                if (!$dropped && is_array($req) && ($req['op'] ?? null) === $dropOp) {
                    $dropped = true;
                    $pairs[$cid][3] = true;
                }
            }
            fwrite($u, $data);
        } else {
            // kamid to client: once the lost request is answered, drop everything.
            if ($pairs[$cid][3]) {
                fwrite(STDERR, "flaky_proxy: dropped the reply to one $dropOp\n");
                $closePair($cid);
                continue;
            }
            fwrite($c, $data);
        }
    }
}
