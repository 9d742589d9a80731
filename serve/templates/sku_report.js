(function(){
  function val(td,type){var v=td.getAttribute('data-v');
    if(type==='num'){if(v===null||v==='')return null;var f=parseFloat(v);return isNaN(f)?null:f;}
    return (v||td.textContent||'').toLowerCase();}
  function sortTable(table,col,dir){
    var th=table.tHead.rows[0].cells[col],type=th.getAttribute('data-type');
    var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
    rows.sort(function(a,b){var x=val(a.cells[col],type),y=val(b.cells[col],type);
      if(x===null&&y===null)return (+a.getAttribute('data-i'))-(+b.getAttribute('data-i'));
      if(x===null)return 1; if(y===null)return -1;
      if(x<y)return -dir; if(x>y)return dir;
      return (+a.getAttribute('data-i'))-(+b.getAttribute('data-i'));});
    rows.forEach(function(r){body.appendChild(r);});
    Array.prototype.forEach.call(table.tHead.rows[0].cells,function(c){c.classList.remove('asc','desc');});
    th.classList.add(dir>0?'asc':'desc');}
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'),function(table){
    Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,col){
      th.addEventListener('click',function(){
        var dir=th.classList.contains('desc')?1:(th.classList.contains('asc')?-1:
          (th.getAttribute('data-type')==='num'?-1:1));
        sortTable(table,col,dir);});});});
  var table=document.getElementById('sku-table');if(!table)return;
  var data=JSON.parse(document.getElementById('sku-data').textContent);
  var q=document.getElementById('sku-filter'),cat=document.getElementById('sku-category'),
      mn=document.getElementById('sku-min-orders'),cnt=document.getElementById('sku-count');
  function apply(){var text=q.value.trim().toLowerCase(),c=cat.value,m=parseFloat(mn.value)||0,shown=0;
    Array.prototype.forEach.call(table.tBodies[0].rows,function(r){
      var rec=data.rows[+r.getAttribute('data-i')],o=data.cols;
      var hay=r.textContent.toLowerCase(),ok=(!text||hay.indexOf(text)>=0);
      if(ok&&c)ok=rec[o.indexOf('category')]===c;
      if(ok&&m)ok=rec[o.indexOf('orders')]>=m;
      r.style.display=ok?'':'none';if(ok)shown++;});
    cnt.textContent=shown+' of '+data.rows.length+' SKUs shown';}
  q.addEventListener('input',apply);cat.addEventListener('change',apply);mn.addEventListener('input',apply);
  function csvCell(v){if(v===null||v===undefined)return '';var s=String(v);
    if(typeof v==='string'&&/^[=+\-@\t\r]/.test(s))s="'"+s;  // as serve/csvsafe.py: no formulas
    return /[",\n\r]/.test(s)?'"'+s.replace(/"/g,'""')+'"':s;}
  document.getElementById('sku-export').addEventListener('click',function(){
    var lines=[data.cols.map(csvCell).join(',')];
    Array.prototype.forEach.call(table.tBodies[0].rows,function(r){if(r.style.display==='none')return;
      lines.push(data.rows[+r.getAttribute('data-i')].map(csvCell).join(','));});
    var blob=new Blob([lines.join('\r\n')+'\r\n'],{type:'text/csv;charset=utf-8'});
    var a=document.createElement('a');a.href=URL.createObjectURL(blob);a.download=data.filename;
    document.body.appendChild(a);a.click();setTimeout(function(){URL.revokeObjectURL(a.href);a.remove();},0);});
  apply();
})();
