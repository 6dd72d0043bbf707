-- Run by tests/mysql_clients.rs through airlock with the mariadb CLI, both
-- piped on stdin and with `source`. Comments, several statements per line,
-- a database switch (COM_INIT_DB) and an executable comment.
use app
SELECT v FROM t WHERE id = 1;
/* a comment */ SELECT COUNT(*) FROM t; SELECT 40 /*!40101 + 2 */;
# hash comment
INSERT INTO t VALUES (10, 'ten', 100);
SELECT v FROM t WHERE id = 10;
