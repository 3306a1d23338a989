<?php

declare(strict_types=1);

// PSR-4 autoloader for the Kami\ namespace, for use without Composer:
//     require __DIR__ . '/clients/php/autoload.php';
spl_autoload_register(static function (string $class): void {
    if (strncmp($class, 'Kami\\', 5) !== 0) {
        return;
    }
    $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, 5)) . '.php';
    if (is_file($file)) {
        require $file;
    }
});
